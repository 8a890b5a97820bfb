"""Issue acceptance: busybox runs under translation exactly as natively in a chroot."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from oracle import REPO, run_native, run_translated, tree_hash

HELLO = "echo hello; ls /; cat /etc/passwd | wc -l; echo $((6*7))"

SCRIPT = r"""
set -u
echo start > /tmp/out
echo more >> /tmp/out
cat < /tmp/out | tr a-z A-Z
ls /nonexistent 2>&1 | sed 's/^.*: //'
cat <<EOF
here $((1+2)) doc
EOF
(echo sub; exit 4); echo "subshell status $?"
sleep 0.2 & p1=$!
sh -c 'exit 7' & p2=$!
wait $p1; echo "bg1 $?"
wait $p2; echo "bg2 $?"
sleep 10 & p3=$!
kill $p3; wait $p3; echo "killed $?"
false; echo "false $?"
x=$(echo captured | wc -c); echo "capture $x"
for i in 1 2 3; do printf '%s-' "$i"; done; echo
exit 3
"""

FILES = ("mkdir -p /tmp/a/b && cd /tmp/a && echo x > b/f && ln -s b/f l && cat l && mv b/f b/g && "
         "ls -la b | wc -l && rm -r /tmp/a && echo gone && ls /tmp")


def _same(argv: list[str], image_copy: Path, native_root: Path) -> tuple[bytes, int]:
    t = run_translated(argv, image_copy)
    n = run_native(argv, native_root)
    assert t.stdout == n.stdout, (t.stdout, n.stdout, t.stderr)
    assert t.returncode == n.returncode, (t.returncode, n.returncode, t.stderr)
    return t.stdout, t.returncode


def _native_copy(image_copy: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "native"
    shutil.copytree(image_copy, dst, symlinks=True)
    return dst


def test_hello_matches_native(image_copy: Path, tmp_path: Path) -> None:
    out, code = _same(["sh", "-c", HELLO], image_copy, _native_copy(image_copy, tmp_path))
    assert out.startswith(b"hello\n") and out.endswith(b"42\n")
    assert code == 0


def test_shell_script_matches_native(image_copy: Path, tmp_path: Path) -> None:
    out, code = _same(["sh", "-c", SCRIPT], image_copy, _native_copy(image_copy, tmp_path))
    assert b"START\nMORE\n" in out and b"here 3 doc" in out and b"bg2 7" in out and b"killed 143" in out
    assert code == 3


def test_file_operations_go_to_overlay(image_copy: Path, tmp_path: Path) -> None:
    before = tree_hash(image_copy)
    # /tmp is a tmpfs; /etc and /root are image paths, so those writes land in the overlay.
    argv = ["sh", "-c", FILES + " && echo new > /etc/motd && cat /etc/motd && rm /etc/hostname && "
            "ls /etc && chmod 600 /etc/passwd && ls -l /etc/passwd | cut -c1-10 && mkdir /root/d && ls /root"]
    out, code = _same(argv, image_copy, _native_copy(image_copy, tmp_path))
    assert code == 0 and b"gone" in out and b"-rw-------" in out
    assert tree_hash(image_copy) == before, "the host image directory was written"


def test_exit_codes_and_user_errors(image_copy: Path) -> None:
    assert run_translated(["sh", "-c", "exit 5"], image_copy).returncode == 5
    r = run_translated(["no-such-program"], image_copy)
    assert r.returncode == 127 and r.stderr.count(b"\n") == 1 and b"not found" in r.stderr
    r = run_translated(["true"], image_copy, extra=["--cwd", "/nonexistent"])
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"--cwd" in r.stderr
    r = run_translated(["/etc/passwd"], image_copy)  # not executable: 126, as a shell says
    assert r.returncode == 126 and r.stderr.count(b"\n") == 1


def test_signal_to_cli_reaches_guest(image_copy: Path) -> None:
    """SIGTERM/SIGINT to the CLI reach the guest; a guest without a handler dies, 128+N."""
    proc = subprocess.Popen([sys.executable, "-m", "linuxabi", "run", "--root", str(image_copy), "--",
                             "sh", "-c", "trap 'echo got TERM; exit 9' TERM; echo ready; while :; do sleep 0.05; done"],
                            stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert out == b"got TERM\n" and proc.returncode == 9
    proc = subprocess.Popen([sys.executable, "-m", "linuxabi", "run", "--root", str(image_copy), "--",
                             "sh", "-c", "echo ready; exec sleep 100"], stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGINT


def test_profile_counts_translated_calls(image_copy: Path, tmp_path: Path) -> None:
    """`linuxabi run --profile FILE` writes calls and translator time per syscall."""
    prof = tmp_path / "profile.txt"
    r = run_translated(["sh", "-c", "for i in 1 2 3 4 5; do cat /etc/passwd >/dev/null; done"], image_copy,
                       extra=["--profile", str(prof)])
    assert r.returncode == 0, r.stderr
    rows = {line.split()[-1]: int(line.split()[0]) for line in prof.read_text().splitlines()[1:-1]}
    assert rows["openat"] >= 10  # each cat opens /etc/passwd and /dev/null via the shell
    assert all(n > 0 for n in rows.values())
