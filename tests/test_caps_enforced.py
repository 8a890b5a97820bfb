"""Capabilities enforced under translation: policies, refusals, escapes, the audit log."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
from oracle import REPO, run_translated

READONLY_DATA = """\
[filesystem]
"/" = "rwxcd"
"/data" = "r"
"""

# The image readable, /tmp and /work writable, /data read-only, /secret not granted at all,
# /work/sub/ro read-only inside the writable /work.
ESCAPES = """\
[filesystem]
"/" = "rx"
"/tmp" = "rwxcd"
"/data" = "r"
"/secret" = ""
"/work" = "rwxcd"
"/work/sub/ro" = "r"
"""


def _image(image_copy: Path) -> Path:
    (image_copy / "data" / "sub").mkdir(parents=True)
    (image_copy / "data" / "f").write_text("data\n")
    (image_copy / "data" / "sub" / "g").write_text("g\n")
    (image_copy / "secret").mkdir()
    (image_copy / "secret" / "s").write_text("secret\n")
    (image_copy / "work" / "sub" / "ro").mkdir(parents=True)
    (image_copy / "work" / "sub" / "ro" / "f").write_text("ro\n")
    return image_copy


def _policy(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def _audit(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _denials(log: Path) -> list[dict]:
    return [r["details"] for r in _audit(log) if r["event"] == "deny"]


def _verify(log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linuxabi", "audit", "verify", str(log)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


def test_readonly_subtree_refusals_are_eacces_and_audited(image_copy: Path, tmp_path: Path) -> None:
    root = _image(image_copy)
    log = tmp_path / "audit.log"
    script = r"""
cat /data/f; ls /data
echo x > /data/f; echo "write $?"
echo x > /data/new; echo "create $?"
unlink /data/f; echo "delete $?"
chmod 600 /data/f; echo "chmod $?"
echo y > /y; mv /y /data/y; echo "rename-in $?"
mkdir /data/d; echo "mkdir $?"
cd /data/sub && cat g; echo "cd $?"
cat /data/f
echo alive
"""
    r = run_translated(["sh", "-c", script], root, extra=["--policy", str(_policy(tmp_path, READONLY_DATA)),
                                                         "--audit", str(log)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "data", "f", "sub", "write 1", "create 1", "delete 1", "chmod 1", "rename-in 1", "mkdir 1",
        "g", "cd 0", "data", "alive"]
    err = r.stderr.decode()
    assert err.count("Permission denied") == 6, err  # EACCES each time, as sh reports it
    denied = {(d["op"], d["path"]) for d in _denials(log)}
    assert {("open", "/data/f"), ("create", "/data/new"), ("delete", "/data/f"), ("setattr", "/data/f"),
            ("rename", "/data/y"), ("create", "/data/d")} <= denied
    assert all(d["errno"] == "EACCES" and d["pid"] >= 1 for d in _denials(log))
    assert (root / "data" / "f").read_text() == "data\n"
    assert _verify(log).returncode == 0


PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, long r) {
    printf("%s %s\n", what, r < 0 ? strerrorname_np(errno) : "OK");
}
static long op(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    if (fd >= 0) close(fd);
    return fd;
}

int main(void) {
    char buf[256];
    struct stat sb;
    report("dotdot", op("/data/../secret/s", O_RDONLY));
    report("stat", stat("/secret/s", &sb));
    symlink("/secret/s", "/tmp/abs");
    report("symlink-abs", op("/tmp/abs", O_RDONLY));
    symlink("../secret/s", "/tmp/rel");
    report("symlink-rel", op("/tmp/rel", O_RDONLY));
    report("proc-root", op("/proc/self/root/secret/s", O_RDONLY));
    chdir("/");
    report("proc-cwd", op("/proc/self/cwd/secret/s", O_RDONLY));
    int ro = open("/data/f", O_RDONLY);
    snprintf(buf, sizeof buf, "/proc/%d/fd/%d", getpid(), ro);
    report("proc-fd-write", op(buf, O_WRONLY));
    int dir = open("/data/sub", O_RDONLY | O_DIRECTORY);
    snprintf(buf, sizeof buf, "/proc/self/fd/%d/../../secret/s", dir);
    report("proc-fd-dotdot", op(buf, O_RDONLY));
    report("openat-dotdot", openat(dir, "../../secret/s", O_RDONLY));
    report("hardlink-out", link("/data/f", "/work/f"));
    report("rename-out", rename("/data/f", "/work/f2"));
    report("rename-subtree", rename("/work/sub", "/work/moved"));
    report("write-ro-inner", op("/work/sub/ro/f", O_WRONLY));
    report("bind-mount", mount("/secret", "/work", NULL, MS_BIND, NULL));
    report("mount", mount("none", "/work", "tmpfs", 0, NULL));
    report("pivot_root", syscall(SYS_pivot_root, "/work", "/work/sub"));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, buf));
    report("bpf", syscall(SYS_bpf, 0, buf, 16));
    report("perf_event_open", syscall(SYS_perf_event_open, buf, 0, -1, -1, 0));
    report("ptrace", ptrace(PTRACE_ATTACH, 1, 0, 0));
    pid_t child = fork();  /* another guest process reading this one's memory: debugging it */
    if (child == 0) {
        struct iovec mine = {buf, 8}, theirs = {buf, 8};
        report("process_vm_readv", process_vm_readv(getppid(), &mine, 1, &theirs, 1, 0));
        fflush(stdout);
        _exit(0);
    }
    waitpid(child, NULL, 0);
    report("unshare", unshare(CLONE_NEWNS));
    report("read-ok", op("/data/sub/g", O_RDONLY));
    report("write-ok", op("/work/sub/new", O_WRONLY | O_CREAT));
    printf("alive\n");
    return 0;
}
"""

EXPECTED = {
    "dotdot": "EACCES", "stat": "EACCES", "symlink-abs": "EACCES", "symlink-rel": "EACCES",
    "proc-root": "EACCES", "proc-cwd": "EACCES", "proc-fd-write": "EACCES", "proc-fd-dotdot": "EACCES",
    "openat-dotdot": "EACCES", "hardlink-out": "EACCES", "rename-out": "EACCES", "rename-subtree": "EACCES",
    "write-ro-inner": "EACCES", "bind-mount": "EPERM", "mount": "EPERM", "pivot_root": "EPERM",
    "io_uring_setup": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM", "ptrace": "EPERM",
    "process_vm_readv": "EPERM",
    "unshare": "EPERM", "read-ok": "OK", "write-ok": "OK",
}


def test_escape_attempts_fail_and_are_audited(image_copy: Path, tmp_path: Path) -> None:
    root = _image(image_copy)
    src = tmp_path / "probe.c"
    src.write_text(PROBE)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(root / "probe"), str(src)], check=True)
    log = tmp_path / "audit.log"
    r = run_translated(["/probe"], root, extra=["--policy", str(_policy(tmp_path, ESCAPES)), "--audit", str(log)])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[-1] == "alive", r.stdout
    got = dict(line.split(" ", 1) for line in lines[:-1])
    assert got == EXPECTED
    denials = _denials(log)
    paths = [d.get("path") for d in denials]
    assert paths.count("/secret/s") >= 8  # every route to it ended at the same object
    assert {"/data/f", "/work/sub"} <= set(paths)  # the write reopen, the link, the subtree move
    syscalls = {d["syscall"] for d in denials if d["kind"] == "syscall"}
    assert syscalls == {"mount", "pivot_root", "io_uring_setup", "bpf", "perf_event_open", "ptrace", "unshare",
                        "process_vm_readv"}
    assert _verify(log).returncode == 0


def test_exec_needs_the_exec_right_and_every_exec_is_audited(image_copy: Path, tmp_path: Path) -> None:
    root = _image(image_copy)
    (root / "data" / "bb").write_bytes((root / "bin" / "busybox").read_bytes())
    (root / "data" / "bb").chmod(0o755)
    log = tmp_path / "audit.log"
    r = run_translated(["sh", "-c", "/data/bb true; echo \"rc $?\"; /bin/true; echo \"rc $?\""], root,
                       extra=["--policy", str(_policy(tmp_path, READONLY_DATA)), "--audit", str(log)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["rc 126", "rc 0"]
    records = _audit(log)
    assert any(x["event"] == "deny" and x["details"].get("op") == "exec" and x["details"]["path"] == "/data/bb"
               for x in records)
    execs = [x["details"]["path"] for x in records if x["event"] == "exec"]
    assert execs[0] == "/bin/busybox" and len(execs) >= 2  # sh itself, then true


def test_default_policy_devices_and_audit_location(image_copy: Path, tmp_path: Path) -> None:
    """Without --policy: the image and /tmp writable (the overlay takes the writes), the usual
    devices; without --audit the log is a per-sandbox file under $XDG_CACHE_HOME."""
    cache = tmp_path / "cache"
    idf = tmp_path / "id"
    r = run_translated(["sh", "-c", "echo a > /etc/new && cat /etc/new && echo b > /tmp/t && cat /tmp/t && "
                        "head -c 4 /dev/zero | wc -c && echo > /dev/null && echo ok"], image_copy,
                       extra=["--id-file", str(idf)], env={"XDG_CACHE_HOME": str(cache)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["a", "b", "4", "ok"]
    sid = idf.read_text().strip()
    log = cache / "linuxabi" / "audit" / f"{sid}.log"
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    grants = [x["details"]["obj"] for x in _audit(log) if x["event"] == "grant"]
    assert "/ minus /tmp" in grants and "/dev/null" in grants
    assert _verify(log).returncode == 0


def test_device_not_in_policy_is_refused(image_copy: Path, tmp_path: Path) -> None:
    policy = READONLY_DATA + '[devices]\nallow = ["/dev/null"]\n'
    log = tmp_path / "audit.log"
    r = run_translated(["sh", "-c", "cat /dev/zero; echo \"rc $?\"; echo > /dev/null; echo \"rc $?\""], image_copy,
                       extra=["--policy", str(_policy(tmp_path, policy)), "--audit", str(log)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["rc 1", "rc 0"]
    assert any(d["kind"] == "device" and d["path"] == "/dev/zero" for d in _denials(log))


def test_tampered_audit_log_is_detected_with_the_record_number(image_copy: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    r = run_translated(["sh", "-c", "cat /data/f 2>/dev/null; echo x > /data/f; /bin/true; true"], _image(image_copy),
                       extra=["--policy", str(_policy(tmp_path, READONLY_DATA)), "--audit", str(log)])
    assert r.returncode == 0, r.stderr
    good = log.read_bytes()
    lines = good.splitlines(keepends=True)
    assert len(lines) >= 6 and _verify(log).returncode == 0

    def verdict(data: bytes) -> str:
        log.write_bytes(data)
        v = _verify(log)
        assert v.returncode == 1, v.stdout
        return v.stdout

    i = good.index(b'"/data/f"') + 3  # a byte inside record N's details
    n = good[:i].count(b"\n") + 1
    assert f"record {n}:" in verdict(good[:i] + b"X" + good[i + 1:])
    assert "record 3:" in verdict(b"".join(lines[:2] + lines[3:]))
    assert "record 4:" in verdict(b"".join(lines[:3] + [lines[4], lines[3]] + lines[5:]))


def test_policy_check_command(tmp_path: Path) -> None:
    bad = _policy(tmp_path, '[filesystem]\n"/" = "rx"\n"data" = "r"\n')
    r = subprocess.run([sys.executable, "-m", "linuxabi", "policy", "check", str(bad)], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    assert r.returncode == 1 and r.stdout.startswith(f"{bad}:3: ")
    r = subprocess.run([sys.executable, "-m", "linuxabi", "run", "--policy", str(bad), "--", "true"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and ":3: " in r.stderr


def test_revoke_cuts_a_running_guest_off(image_copy: Path, tmp_path: Path) -> None:
    """Acceptance: revoking a directory while the guest holds an open fd in it makes the next
    read through that fd fail, and an exec of a binary in it fail; the guest keeps running."""
    root = _image(image_copy)
    (root / "data" / "f").write_text("first\nsecond\n")
    (root / "data" / "true").write_bytes((root / "bin" / "busybox").read_bytes())  # the `true` applet
    (root / "data" / "true").chmod(0o755)
    policy = _policy(tmp_path, '[filesystem]\n"/" = "rwxcd"\n"/data" = "rx"\n')
    idf = tmp_path / "id"
    script = ('exec 3</data/f; read -r a <&3; echo "got $a"; /data/true && echo exec-ok; echo ready; '
              'read -r go; cat <&3; echo "read $?"; /data/true; echo "exec $?"; echo done')
    cmd = [sys.executable, "-m", "linuxabi", "run", "--root", str(root), "--policy", str(policy),
           "--id-file", str(idf), "--audit", str(tmp_path / "audit.log"), "--", "sh", "-c", script]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert p.stdout is not None and p.stdin is not None
        seen = b""
        while seen.count(b"\n") < 3:  # raw reads: a buffered readline would hide lines from select
            assert select.select([p.stdout], [], [], 30)[0], seen  # never wait forever on the guest
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, seen
            seen += chunk
        assert seen.decode().splitlines() == ["got first", "exec-ok", "ready"]
        ctl = subprocess.run([sys.executable, "-m", "linuxabi", "ctl", "revoke", idf.read_text().strip(), "/data"],
                             capture_output=True, text=True, cwd=REPO, timeout=30)
        assert ctl.returncode == 0, ctl.stderr
        assert "1 open files cut off" in ctl.stdout
        out, _ = p.communicate(b"go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = out.decode().splitlines()
    assert "second" not in lines
    assert lines[-3:] == ["read 1", "exec 126", "done"]


def test_restrictive_policy_keeps_the_guests_own_stdio(image_copy: Path, tmp_path: Path) -> None:
    """Reopening what the guest already holds (its stdout pipe, through /dev/stdout and
    /proc/self/fd) needs no capability; files of the image stay read-only under "rx"."""
    r = run_translated(["sh", "-c", "echo hi > /dev/stdout; echo x > /etc/passwd; echo \"rc $?\""], _image(image_copy),
                       extra=["--policy", str(_policy(tmp_path, ESCAPES)), "--audit", str(tmp_path / "a.log")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["hi", "rc 1"]


_MAPPER = r"""
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
/* Map a file shared and privately, close the fd, read through both mappings; after "go"
 * read each again: a revoked file's pages must fault. */
static sigjmp_buf back;
static void on_segv(int sig) { (void)sig; siglongjmp(back, 1); }
static void touch(const char *name, const char *p) {
    if (sigsetjmp(back, 1)) { printf("%s faults\n", name); return; }
    volatile char c = p[0];
    printf("%s still reads %c\n", name, c);
}
int main(void) {
    int fd = open("/data/f", O_RDONLY);
    char *shared = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    char *priv = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (shared == MAP_FAILED || priv == MAP_FAILED) { perror("mmap"); return 1; }
    printf("shared %.4s private %.4s\nready\n", shared, priv);
    fflush(stdout);
    char go[8];
    if (!fgets(go, sizeof go, stdin)) return 1;
    signal(SIGSEGV, on_segv);
    touch("shared", shared);
    touch("private", priv);
    return 0;
}
"""


def test_revoke_takes_away_mapped_file_memory(image_copy: Path, tmp_path: Path) -> None:
    """Mapped file pages bypass the translator like fds do: after a revoke, touching them
    faults instead of reading the file (DESIGN.md, principle 6)."""
    root = _image(image_copy)
    src = tmp_path / "mapper.c"
    src.write_text(_MAPPER)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(root / "mapper"), str(src)], check=True)
    policy = _policy(tmp_path, '[filesystem]\n"/" = "rwxcd"\n"/data" = "rx"\n')
    idf = tmp_path / "id"
    cmd = [sys.executable, "-m", "linuxabi", "run", "--root", str(root), "--policy", str(policy),
           "--id-file", str(idf), "--audit", str(tmp_path / "audit.log"), "--", "/mapper"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"shared data private data\n"
        assert p.stdout.readline() == b"ready\n"
        ctl = subprocess.run([sys.executable, "-m", "linuxabi", "ctl", "revoke", idf.read_text().strip(), "/data"],
                             capture_output=True, text=True, cwd=REPO, timeout=30)
        assert ctl.returncode == 0, ctl.stderr
        out, err = p.communicate(b"go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.decode().splitlines() == ["shared faults", "private faults"], (out, err, p.returncode)
