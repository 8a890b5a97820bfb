"""Ordinary glibc programs from Debian-package images, under translation, each compared with
the same command run natively in a chroot of a copy of the same image."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oracle import run_native, run_translated

from linuxabi.images import Store, build_image
from linuxabi.images.progress import Quiet
from linuxabi.images.store import cache_dir


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("images"), cache_dir() / "debs")


def _image(store: Store, name: str, packages: list[str]) -> Path:
    return build_image(name, packages, store=store, progress=Quiet()).root


@pytest.fixture(scope="session")
def tools(store: Store) -> Path:
    return _image(store, "tools", ["dash", "coreutils", "findutils", "grep", "sed", "tar", "gzip"])


@pytest.fixture(scope="session")
def py(store: Store) -> Path:
    return _image(store, "py", ["dash", "coreutils", "python3"])


def _same(image: Path, tmp_path: Path, script: str, timeout: float = 120) -> str:
    native_root = tmp_path / "native"
    shutil.copytree(image, native_root, symlinks=True)
    t = run_translated(["/bin/sh", "-c", script], image, timeout=timeout)
    n = run_native(["/bin/sh", "-c", script], native_root, timeout=timeout)
    assert (t.returncode, t.stdout.decode()) == (n.returncode, n.stdout.decode()), t.stderr.decode()
    return t.stdout.decode()


TOOLS_SCRIPT = r"""
ls -la /usr/bin | sort | head
find /usr -name '*.so*' | wc -l
tar czf /tmp/x.tgz /etc 2>/dev/null && tar tzf /tmp/x.tgz | wc -l
grep -c root /etc/passwd
sed -n 's/^\([a-z]*\):.*/\1/p' /etc/passwd | sort | grep -v '^$' | head -3
printf 'b\na\nc\n' | sort -r | tr a-z A-Z
echo hello | gzip | gunzip
seq 1 100 | awk_missing 2>/dev/null; echo "status $?"
readlink /proc/self/exe
cat /proc/self/comm
"""


def test_coreutils_findutils_tar_gzip_grep_sed(tools: Path, tmp_path: Path) -> None:
    out = _same(tools, tmp_path, TOOLS_SCRIPT)
    assert "/usr/bin/readlink" in out  # /proc/self/exe names the guest's program
    assert "HELLO" not in out and "C\nB\nA" in out
    assert "status 127" in out


PY_SCRIPT = r'''
import multiprocessing, os, select, shutil, signal, subprocess, sys, tempfile, threading
res = [0] * 10
def work(i): res[i] = i * i
ts = [threading.Thread(target=work, args=(i,)) for i in range(10)]
[t.start() for t in ts]; [t.join() for t in ts]
print("threads", sum(res))
r = subprocess.run([sys.executable, "-c", "print(6*7)"], capture_output=True, text=True)
print("subprocess", r.returncode, r.stdout.strip())
r = subprocess.run(["/bin/ls", "/usr/lib/python3.11/json"], capture_output=True, text=True)
print("ls", r.returncode, "decoder.py" in r.stdout)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append("usr1"))
os.kill(os.getpid(), signal.SIGUSR1)
signal.signal(signal.SIGALRM, lambda s, f: got.append("alrm"))
signal.setitimer(signal.ITIMER_REAL, 0.05)
while len(got) < 2:
    signal.pause()
print("signals", got)
r1, w1 = os.pipe(); r2, w2 = os.pipe()
os.write(w2, b"x")
ready, _, _ = select.select([r1, r2], [], [], 5)
print("select", ready == [r2])
with tempfile.TemporaryDirectory() as d:
    os.makedirs(d + "/a/b"); open(d + "/a/b/f", "w").write("hi")
    shutil.copytree(d + "/a", d + "/c")
    print("copytree", open(d + "/c/b/f").read(), sorted(os.listdir(d)))
def sq(x): return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(2) as p:
        print("pool", p.map(sq, range(10)))
import socket
print("localhost", sorted({a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET)}))
print("exe", os.readlink("/proc/self/exe"), sys.executable)
'''


def test_python3_threads_processes_signals(py: Path, tmp_path: Path) -> None:
    (py / "root" / "t.py").write_text(PY_SCRIPT)
    out = _same(py, tmp_path, "python3 /root/t.py")
    for line in ("threads 285", "subprocess 0 42", "ls 0 True", "fork 7", "signals ['usr1', 'alrm']",
                 "select True", "copytree hi ['a', 'c']", "pool [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
                 "localhost ['127.0.0.1']"):
        assert line in out, out


def test_dynamic_exec_errors_match_native(tools: Path, tmp_path: Path) -> None:
    """A missing PT_INTERP gives Linux's errors; the image's ld.so runs programs."""
    script = r"""
cp /usr/bin/true /tmp/t && /tmp/t; echo "copy $?"
/lib64/ld-linux-x86-64.so.2 /usr/bin/echo direct; echo "ldso $?"
sed 's#/lib64/ld-linux-x86-64.so.2#/lib64/ld-lunix-x86-64.so.2#' /usr/bin/true > /tmp/noint
chmod +x /tmp/noint; /tmp/noint 2>/dev/null; echo "noint $?"
"""
    out = _same(tools, tmp_path, script)
    assert "copy 0" in out and "direct" in out and "noint 127" in out
