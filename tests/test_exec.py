"""Exec resolved in the VFS: static ELF, #! scripts, the errors Linux gives, argv/envp, cloexec."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from oracle import run_native, run_translated

SETUP = r"""
printf 'garbage\n' > /tmp/garbage; chmod +x /tmp/garbage
printf '#!/bin/sh\necho script "$0" "$@"\n' > /tmp/s.sh; chmod +x /tmp/s.sh
printf '#!/bin/echo with-arg\n' > /tmp/e.sh; chmod +x /tmp/e.sh
printf '#!/nonexistent/interp\n' > /tmp/noint.sh; chmod +x /tmp/noint.sh
printf '#!/bin/sh\necho no exec bit\n' > /tmp/nox.sh; chmod 644 /tmp/nox.sh
mkdir /tmp/dir
"""
CHECKS = r"""
/tmp/s.sh one 'two words'; echo "rc=$?"
/tmp/e.sh x y; echo "rc=$?"
cd /tmp && ./s.sh rel; echo "rc=$?"; cd /
/tmp/garbage 2>&1; echo "rc=$?"
/tmp/noint.sh 2>&1; echo "rc=$?"
/tmp/nox.sh 2>&1; echo "rc=$?"
/tmp/dir 2>&1; echo "rc=$?"
/tmp/missing 2>&1; echo "rc=$?"
env -i A=1 B=2 /usr/bin/env; echo "rc=$?"
exec 7</etc/passwd; ls /proc/self/fd/7 >/dev/null 2>&1 && echo fd7-inherited
sh -c 'echo $0 $1 $2' zero one two
"""


def test_exec_matches_native(image_copy: Path, tmp_path: Path) -> None:
    native = tmp_path / "native"
    shutil.copytree(image_copy, native, symlinks=True)
    script = SETUP + CHECKS
    t = run_translated(["sh", "-c", script], image_copy)
    n = run_native(["sh", "-c", script], native)
    assert t.stdout.decode() == n.stdout.decode(), t.stderr
    out = t.stdout.decode()
    assert "script /tmp/s.sh one two words" in out
    assert "with-arg /tmp/e.sh x y" in out
    assert "A=1\nB=2\n" in out


def test_close_on_exec_is_honoured(image_copy: Path, tmp_path: Path) -> None:
    """open(O_CLOEXEC) is answered with an fd injected close-on-exec; the kernel's exec closes it."""
    src = tmp_path / "cloexec.c"
    src.write_text(r"""
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    int a = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    int b = open("/etc/group", O_RDONLY);
    printf("fds %d %d flags %d %d\n", a, b, fcntl(a, F_GETFD), fcntl(b, F_GETFD));
    fflush(stdout);
    execl("/bin/sh", "sh", "-c",
          "for f in 3 4; do if (: <&$f) 2>/dev/null; then echo open $f; else echo closed $f; fi; done",
          (char *)0);
    return 99;
}
""")
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "cloexec"), str(src)], check=True)
    r = run_translated(["/cloexec"], image_copy)
    assert r.stdout.decode().splitlines() == ["fds 3 4 flags 1 0", "closed 3", "open 4"], r.stderr


def test_an_interpreter_is_staged_again_in_a_root_that_looks_like_a_finished_one(tmp_path: Path) -> None:
    """Sandbox roots are tmpfs mounts: a new one can have a finished one's device number (and
    the root inode number is always the same), so "staged there before" must be checked."""
    from linuxabi.host.interp import stage_into

    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "ld.so"
    src.write_bytes(b"\x7fELF" + bytes(100))
    fd = os.open(src, os.O_RDONLY)
    try:
        stage_into(str(root).encode(), b"/lib64/ld-linux-x86-64.so.2", fd)
        staged = root / "lib64" / "ld-linux-x86-64.so.2"
        assert staged.read_bytes() == src.read_bytes()
        shutil.rmtree(root / "lib64")  # the same root identity, now without the file
        stage_into(str(root).encode(), b"/lib64/ld-linux-x86-64.so.2", fd)
        assert staged.read_bytes() == src.read_bytes()
    finally:
        os.close(fd)


EXEC_STRESS = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile long ticks;
static void on_tick(int sig) { (void)sig; ticks++; }

/* fork + exec of `prog args` with a timer signalling the child every 200 us until the exec
 * (a POSIX timer: exec deletes it, and SIGURG is ignored by default after it); the status. */
static int run(char *const argv[]) {
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_tick;  /* no SA_RESTART: an interrupted call would show EINTR */
        sigaction(SIGURG, &sa, 0);
        struct sigevent ev = {0};
        ev.sigev_notify = SIGEV_SIGNAL;
        ev.sigev_signo = SIGURG;
        timer_t tm;
        struct itimerspec it = {{0, 200000}, {0, 200000}};
        if (timer_create(CLOCK_MONOTONIC, &ev, &tm) || timer_settime(tm, 0, &it, 0)) _exit(99);
        execv(argv[0], argv);
        _exit(100 + errno);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 200 + WTERMSIG(st);
}

int main(void) {
    /* 1. A guest fd at 322 (the number the translator prefers for the program file) survives
     *    exec untouched: the child reads the file behind it. */
    int fd = open("/etc/passwd", O_RDONLY);
    if (dup2(fd, 322) != 322) return 1;
    char *cat[] = {"/bin/sh", "-c", "head -c 4 <&322; echo", 0};
    printf("fd322 %d\n", run(cat));
    fflush(stdout);
    close(322);
    /* 2. Many execs while a signal keeps arriving: every one succeeds (status 0). */
    char *t[] = {"/bin/true", 0};
    int bad = 0;
    for (int i = 0; i < 100; i++) bad += run(t) != 0;
    printf("storm-failures %d\n", bad);
    /* 3. A failing exec (E2BIG) returns its errno and leaves no fd behind. */
    size_t n = 200 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'x', n); big[n] = 0;
    char *args[] = {"/bin/true", big, 0};
    int r = execv(args[0], args);
    int e = errno;
    int open322 = fcntl(322, F_GETFD) != -1;
    printf("e2big %d %s fd322-open %d\n", r, strerror(e), open322);
    return 0;
}
"""


def test_exec_keeps_guest_fds_survives_signals_and_fails_cleanly(image_copy: Path, tmp_path: Path) -> None:
    """The program file is installed at fd 322 when that slot is free (the fd request then
    returns straight into the execveat); a guest's own fd 322 makes it use another slot, a
    signal interrupting the request restarts it, and a failed exec closes what was installed."""
    src = tmp_path / "execstress.c"
    src.write_text(EXEC_STRESS)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "execstress"), str(src)], check=True)
    native = tmp_path / "native"
    shutil.copytree(image_copy, native, symlinks=True)
    t = run_translated(["/execstress"], image_copy)
    n = run_native(["/execstress"], native)
    assert t.stdout.decode().splitlines() == [
        "root", "fd322 0", "storm-failures 0", "e2big -1 Argument list too long fd322-open 0"], t.stderr
    assert t.stdout == n.stdout


def test_everything_works_without_the_compiled_helpers(image_copy: Path, tmp_path: Path) -> None:
    """Where `make setup` could not build linuxabi.host._vm, memory writes, fd installs and fd
    identities take their Python paths: same results (exec, fds, signals, opens, fstat)."""
    src = tmp_path / "execstress.c"
    src.write_text(EXEC_STRESS)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "execstress"), str(src)], check=True)
    code = ("import sys\n"
            "sys.modules['linuxabi.host._vm'] = None  # as if never built: its import fails\n"
            "import linuxabi.host.memory as m, linuxabi.host.notify as n, linuxabi.host.task as t\n"
            "assert n._addfd_pinned is None and t._fd_key is None\n"
            "assert m._vm_write.__module__ == 'linuxabi.host.libc'\n"
            "from linuxabi.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    script = "/execstress && cat /etc/passwd | head -c 4 && echo && ls -d /tmp /bin && wc -c < /etc/group"
    r = subprocess.run([sys.executable, "-c", code, "run", "--root", str(image_copy), "--", "/bin/sh", "-c", script],
                       capture_output=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    native = tmp_path / "native"
    shutil.copytree(image_copy, native, symlinks=True)
    n = run_native(["/bin/sh", "-c", script], native)
    assert r.returncode == 0, r.stderr
    assert r.stdout == n.stdout and b"storm-failures 0" in r.stdout, r.stderr


TWO_THREAD_EXEC = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_barrier_t go;

static void *exec_it(void *arg) {
    char **argv = arg;
    pthread_barrier_wait(&go);
    execv(argv[0], argv);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3) {  /* an exec'd program: say which file runs (built in), and whose argv it got */
        printf("prog%s %s\n", WHO, argv[1]);
        return 0;
    }
    int bad = 0, runs = 100;
    for (int i = 0; i < runs; i++) {
        int p[2];
        pipe(p);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            static char *a[] = {"/x/progA", "a", "-", 0}, *b[] = {"/x/progB", "b", "-", 0};
            pthread_t t1, t2;
            pthread_barrier_init(&go, 0, 2);
            pthread_create(&t1, 0, exec_it, a);
            pthread_create(&t2, 0, exec_it, b);
            pthread_join(t1, 0);
            _exit(99);
        }
        close(p[1]);
        char out[64] = {0};
        int n = read(p[0], out, sizeof out - 1);
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        /* one of the two programs ran, with its own argv */
        if (n <= 0 || (strcmp(out, "progA a\n") && strcmp(out, "progB b\n"))) {
            bad++;
            fprintf(stderr, "run %d: %d bytes: %s\n", i, n, out);
        }
    }
    printf("mismatches %d of %d\n", bad, runs);
    return 0;
}
"""


def test_two_threads_exec_at_once_each_program_keeps_its_argv(image_copy: Path, tmp_path: Path) -> None:
    """Two threads of one process call execve together: one program wins (Linux kills the other
    thread), and it runs with its own argv. The program file of a direct exec is installed at
    fd 322, so only one such install may be in flight: a second would replace the first's file."""
    src = tmp_path / "twoexec.c"
    src.write_text(TWO_THREAD_EXEC)
    (image_copy / "x").mkdir()
    for who in ("A", "B"):  # two different files: the one that runs says which it is
        subprocess.run(["gcc", "-O1", "-static", "-pthread", f'-DWHO="{who}"', "-o", str(image_copy / f"x/prog{who}"),
                        str(src)], check=True)
    shutil.copy2(image_copy / "x/progA", image_copy / "twoexec")
    r = run_translated(["/twoexec"], image_copy, timeout=120)
    assert r.stdout.decode() == "mismatches 0 of 100\n", r.stderr.decode()[-2000:]
