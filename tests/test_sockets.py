"""Guest sockets on the sandbox's own loopback, and host ports forwarded in with -p.

Real parts: busybox's httpd, wget and nc in the default image, curl and wrk on the host. All
traffic is on 127.0.0.1 (the host's, for -p) or inside the sandbox's network namespace.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oracle import REPO, run_native, run_translated

HTTPD = "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p {port} -h /www"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    """``linuxabi run ARGS`` in the background, stopped (by its PID) at the end."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "linuxabi", "run", *args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    def wait_port(self, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1].decode()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                    if c.recv(16).startswith(b"HTTP/"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"nothing answered on port {port}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.stderr.read().decode() if self.proc.stderr else ""


def _curl(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-m", "5", *extra, url], capture_output=True, text=True, timeout=30)


def test_guest_to_guest_tcp_on_loopback() -> None:
    script = (HTTPD.format(body="internal-page", port="127.0.0.1:8000").replace("exec httpd -f", "httpd")
              + " && wget -q -O - http://127.0.0.1:8000/ && wget -q -O - http://localhost:8000/"
              + " && { nc -l -p 5000 > /tmp/got & listener=$!; }"
              + " && for i in $(seq 50); do echo via-nc | nc 127.0.0.1 5000 2>/dev/null && break; sleep 0.1; done"
              + " && wait $listener && cat /tmp/got")
    r = run_translated(["sh", "-c", script], timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["internal-page", "internal-page", "via-nc"]


def test_refused_and_unreachable_as_linux_says() -> None:
    r = run_translated(["sh", "-c", "wget -O - http://127.0.0.1:9/ ; echo rc=$?; "
                                    "wget -O - http://10.255.255.1:80/ ; echo rc=$?"], timeout=60)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert out.split() == ["rc=1", "rc=1"]
    assert "Connection refused" in err
    # outside the sandbox's loopback: no network at all (the default policy refuses it first)
    assert "Operation not permitted" in err or "Network is unreachable" in err


_UDP_ECHO = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
/* A UDP echo server (child) and client (parent) on the loopback; the client prints what it got
 * back and whether the reply came from the server's address. */
int main(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(s, (void *)&a, sizeof a) || getsockname(s, (void *)&a, &al)) { perror("bind"); return 1; }
    if (fork() == 0) {
        char buf[64]; struct sockaddr_in from; socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (void *)&from, &fl);
        sendto(s, buf, n, 0, (void *)&from, fl);
        _exit(0);
    }
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(c, "echo me", 7, 0, (void *)&a, sizeof a);
    char buf[64] = {0}; struct sockaddr_in from; socklen_t fl = sizeof from;
    ssize_t n = recvfrom(c, buf, sizeof buf - 1, 0, (void *)&from, &fl);
    printf("%zd %s from_server=%d\n", n, buf, fl == sizeof from && from.sin_port == a.sin_port
           && from.sin_addr.s_addr == a.sin_addr.s_addr);
    wait(NULL);
    return 0;
}
"""


def test_guest_udp_echo_on_loopback(image_copy: Path, tmp_path: Path) -> None:
    src = tmp_path / "udp.c"
    src.write_text(_UDP_ECHO)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "udp"), str(src)], check=True)
    r = run_translated(["/udp"], image_copy, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "7 echo me from_server=1\n"
    assert r.stdout == run_native(["/udp"], image_copy).stdout


def test_the_host_loopback_is_not_the_sandbox_loopback() -> None:
    """A server on the host's 127.0.0.1 is out of the guest's reach: its 127.0.0.1 is its own."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        r = run_translated(["sh", "-c", f"echo x | nc 127.0.0.1 {port}; echo rc=$?"], timeout=60)
        srv.settimeout(0.5)
        with pytest.raises(socket.timeout):
            srv.accept()
    assert r.stdout.decode().split() == ["rc=1"]


def test_publish_forwards_host_connections_to_a_blocking_server() -> None:
    """busybox httpd -f: a blocking accept() loop that forks a child per connection."""
    port = _free_port()
    box = Sandbox(["-p", f"127.0.0.1:{port}:80", "--", "sh", "-c", HTTPD.format(body="forwarded", port=80)])
    try:
        box.wait_port(port)
        for _ in range(5):  # one after another: each accept is parked, then answered
            r = _curl(f"http://127.0.0.1:{port}/")
            assert (r.returncode, r.stdout) == (0, "forwarded\n"), r.stderr
        r = subprocess.run(["wrk", "-t1", "-c4", "-d1s", f"http://127.0.0.1:{port}/"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Socket errors" not in r.stdout, r.stdout
        assert int(r.stdout.split(" requests in ")[0].split()[-1]) > 50
    finally:
        err = box.stop()
    assert "Traceback" not in err, err


_NAMES_SERVER = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
/* Accept one connection on port 8080 and answer with what the guest sees: its own
 * address (getsockname), the peer's (accept and getpeername). */
int main(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(8080)};
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4)) { perror("listen"); return 1; }
    struct sockaddr_in peer, self, peer2;
    socklen_t pl = sizeof peer, sl = sizeof self, p2 = sizeof peer2;
    int c = accept(l, (void *)&peer, &pl);
    getsockname(c, (void *)&self, &sl);
    getpeername(c, (void *)&peer2, &p2);
    char out[256];
    int n = snprintf(out, sizeof out, "self=%s:%d peer=%s:%d same_peer=%d\n", inet_ntoa(self.sin_addr),
                     ntohs(self.sin_port), inet_ntoa(peer.sin_addr), ntohs(peer.sin_port),
                     pl == sizeof peer && !memcmp(&peer, &peer2, sizeof peer));
    write(c, out, n);
    close(c);
    return 0;
}
"""


def test_publish_shows_the_guest_its_own_port_and_the_clients_address(image_copy: Path, tmp_path: Path) -> None:
    src = tmp_path / "names.c"
    src.write_text(_NAMES_SERVER)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "names"), str(src)], check=True)
    port = _free_port()
    box = Sandbox(["--root", str(image_copy), "-p", f"127.0.0.1:{port}:8080", "--", "/names"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                data = c.recv(256)
                if data:
                    break
                c.close()
            except OSError:
                pass
            assert time.monotonic() < deadline, "no answer"
            time.sleep(0.1)
        client_port = c.getsockname()[1]
        c.close()
        assert data.decode().split() == ["self=127.0.0.1:8080", f"peer=127.0.0.1:{client_port}", "same_peer=1"]
    finally:
        box.stop()


def test_publish_mistakes_are_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_translated(["true"], extra=["-p", f"127.0.0.1:{port}:80"])
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and lines == [f"linuxabi: -p 127.0.0.1:{port}:80: Address already in use"]
    r = run_translated(["true"], extra=["-p", "80"])
    assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1
    assert "HOST_PORT:GUEST_PORT" in r.stderr.decode()


def test_nothing_listening_behind_a_published_port_refuses() -> None:
    port = _free_port()
    box = Sandbox(["-p", f"127.0.0.1:{port}:80", "--", "sleep", "30"])
    try:
        time.sleep(1.0)
        r = _curl(f"http://127.0.0.1:{port}/")
        assert r.returncode != 0 and r.stdout == ""
    finally:
        box.stop()


def test_policy_refuses_bind_and_connect(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[filesystem]\n"/" = "rwxcd"\n"/tmp" = "rwxcd"\n'
                      '[network]\nbind = ["tcp:0.0.0.0:7000"]\nconnect = ["tcp:127.0.0.1:7000"]\n'
                      '[devices]\nallow = ["/dev/null"]\n')
    # The listener's output is read after it has exited (wait), and the client retries until the
    # listener is up: fixed sleeps raced on a loaded machine.
    script = ("nc -l -p 7001 ; echo bind7001=$?; nc -l -p 7000 > /tmp/got & listener=$!; "
              "for i in $(seq 50); do echo allowed | nc 127.0.0.1 7000 2>/dev/null && break; sleep 0.1; done; "
              "wait $listener; cat /tmp/got; echo x | nc 127.0.0.1 7002; echo c7002=$?")
    r = run_translated(["sh", "-c", script], extra=["--policy", str(policy)], timeout=60)
    out, err = r.stdout.decode().split(), r.stderr.decode()
    assert out == ["bind7001=1", "allowed", "c7002=1"], (out, err)
    assert "Permission denied" in err  # bind: EACCES
    assert "Operation not permitted" in err  # connect: EPERM


def test_socket_families_outside_the_sandbox_are_refused(image_copy: Path, tmp_path: Path) -> None:
    src = tmp_path / "fam.c"
    src.write_text(r'''
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <netinet/in.h>
int main(void) {
    int r = socket(AF_NETLINK, SOCK_RAW, 0);  printf("netlink %d %d\n", r, r < 0 ? errno : 0);
    r = socket(AF_PACKET, SOCK_RAW, 0);       printf("packet %d %d\n", r, r < 0 ? errno : 0);
    r = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);  printf("raw %d %d\n", r, r < 0 ? errno : 0);
    r = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); printf("ping %d\n", r >= 0);  /* ping's, in the sandbox */
    r = socket(AF_INET, SOCK_STREAM, 0);      printf("inet %d\n", r >= 0);
    return 0;
}
''')
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "fam"), str(src)], check=True)
    r = run_translated(["/fam"], image_copy)
    assert r.stdout.decode().splitlines() == ["netlink -1 97", "packet -1 97", "raw -1 1", "ping 1",
                                                "inet 1"]
    native = run_native(["/fam"], image_copy).stdout.decode().splitlines()
    assert native[-1] == "inet 1"  # the same program natively (as root it may open the others)


def _wait_for_guest_listener(translator_pid: int, port: int, timeout: float = 20.0) -> None:
    """Until a TCP socket listens on ``port`` in the sandbox's network namespace (read through
    the guest init's /proc/PID/net/tcp and tcp6: the guest's own procfs has no /proc/net)."""
    deadline = time.monotonic() + timeout
    listening = re.compile(rf"^\s*\d+: [0-9A-F]+:{port:04X} [0-9A-F]+:0000 0A ", re.M)
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{translator_pid}/task/{translator_pid}/children") as f:
                kids = f.read().split()
            for kid in kids:
                for table in ("tcp", "tcp6"):
                    with open(f"/proc/{kid}/net/{table}") as f:
                        if listening.search(f.read()):
                            return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"no listener on port {port} in the sandbox after {timeout} s")


def test_revoking_a_bind_capability_shuts_the_open_sockets(tmp_path: Path) -> None:
    """The guest's listener and the connection it accepted carry data natively: a revoke reaches
    them anyway (shut down on the host socket itself) and the next bind is refused."""
    policy = tmp_path / "p.toml"
    policy.write_text('[filesystem]\n"/" = "rwxcd"\n"/tmp" = "rwxcd"\n'
                      '[network]\nbind = ["tcp:0.0.0.0:7000"]\nconnect = ["tcp:127.0.0.1:7000"]\n'
                      '[devices]\nallow = ["/dev/null"]\n')
    idf = tmp_path / "id"
    # The client starts once the host sees the listener in the sandbox's namespace (a fixed
    # sleep raced on a loaded machine), and is told "go" once the revoke is done.
    # (The listener's stdin stays open, from a sleep that is stopped once the listener is done.)
    script = ("sleep 30 | nc -l -p 7000 > /tmp/srv & srv=$!; echo ready; read listening; "
              "(echo before; read go; echo after; sleep 0.3; echo later) | nc 127.0.0.1 7000; "
              "while kill -0 $srv 2>/dev/null; do sleep 0.05; done; kill %1 2>/dev/null; wait; "
              "echo served; cat /tmp/srv; nc -l -p 7000; echo relisten=$?")
    cmd = [sys.executable, "-m", "linuxabi", "run", "--policy", str(policy), "--id-file", str(idf),
           "--audit", str(tmp_path / "audit.log"), "--", "sh", "-c", script]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"ready\n"
        _wait_for_guest_listener(p.pid, 7000)
        p.stdin.write(b"listening\n")
        p.stdin.flush()
        time.sleep(0.5)  # the connection is up and "before" went through
        sandbox = idf.read_text().strip()
        listing = subprocess.run([sys.executable, "-m", "linuxabi", "ctl", "list", sandbox],
                                 capture_output=True, text=True, cwd=REPO, timeout=30).stdout
        slot = next(line.split()[0] for line in listing.splitlines() if "tcp:0.0.0.0/0:7000" in line)
        ctl = subprocess.run([sys.executable, "-m", "linuxabi", "ctl", "revoke", sandbox, "--slot", slot],
                             capture_output=True, text=True, cwd=REPO, timeout=30)
        assert ctl.returncode == 0, ctl.stderr
        assert "socket fds shut down" in ctl.stdout, ctl.stdout
        out, err = p.communicate(b"go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.decode().splitlines() == ["served", "before", "relisten=1"], (out, err)
    assert b"bind: Permission denied" in err


_INTERRUPTED_ACCEPT = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
/* A blocking accept() with nobody connecting is interrupted by SIGALRM: EINTR without
 * SA_RESTART; with SA_RESTART it goes on waiting (the second alarm's handler exits). */
static volatile int hits;
static void on_alarm(int sig)
{
    (void)sig;
    if (++hits == 2) {
        static const char msg[] = "restarted, hit again\n";
        write(1, msg, sizeof msg - 1);
        _exit(0);
    }
}
int main(int argc, char **argv) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(argc > 1 ? atoi(argv[1]) : 0)};
    if (bind(l, (void *)&a, sizeof a) || listen(l, 1)) return 1;
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    int r = accept(l, NULL, NULL);
    printf("accept %d %s hits=%d\n", r, r < 0 ? strerror(errno) : "", hits);
    fflush(stdout);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    r = accept(l, NULL, NULL);
    printf("not reached %d\n", r);
    return 1;
}
"""


def test_a_signal_interrupts_a_parked_accept(image_copy: Path, tmp_path: Path) -> None:
    src = tmp_path / "intr.c"
    src.write_text(_INTERRUPTED_ACCEPT)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "intr"), str(src)], check=True)
    native = run_native(["/intr"], image_copy)
    assert native.stdout.decode().splitlines() == ["accept -1 Interrupted system call hits=1", "restarted, hit again"]
    r = run_translated(["/intr"], image_copy, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == native.stdout
    # On a published port the translator serves accept() itself, parked: the same answers.
    r = run_translated(["/intr", "80"], image_copy, timeout=60, extra=["-p", f"127.0.0.1:{_free_port()}:80"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == native.stdout


_PUBLISHED_SERVER = r"""
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
/* A server that is its own client, on port argv[1]: what each side sees, a second bind of
 * the port, then attempts to re-aim the sockets it holds (disconnect, connect elsewhere). */
static void show(const char *what, int fd, int peer) {
    struct sockaddr_in n;
    socklen_t nl = sizeof n;
    int r = peer ? getpeername(fd, (void *)&n, &nl) : getsockname(fd, (void *)&n, &nl);
    printf("%s=%d %s:%d\n", what, r, inet_ntoa(n.sin_addr), ntohs(n.sin_port));
}
static void result(const char *what, int r) {
    printf("%s=%d %s\n", what, r, r ? strerror(errno) : "");
}
int main(int argc, char **argv) {
    int port = atoi(argv[1]), one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4)) { perror("listen"); return 1; }
    show("listener", l, 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    result("connect", connect(c, (void *)&to, sizeof to));
    show("client_peer", c, 1);
    int s = accept(l, NULL, NULL);
    show("server_self", s, 0);
    char buf[8] = {0};
    printf("sent=%zd ", write(c, "ping", 4));
    printf("got=%zd %s\n", read(s, buf, 4), buf);
    int l2 = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l2, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    result("bind2", bind(l2, (void *)&a, sizeof a));
    fflush(stdout);
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    result("disconnect_conn", connect(s, &unspec, sizeof unspec));
    result("disconnect_listener", connect(l, &unspec, sizeof unspec));
    struct sockaddr_in other = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    result("reconnect", connect(s, (void *)&other, sizeof other));
    return 0;
}
"""


def test_publish_a_guest_client_reaches_its_own_server_and_no_socket_leads_out(image_copy: Path, tmp_path: Path) -> None:
    """On a published port the guest's listener is the host's socket: the guest's own client
    reaches it (redirected), both ends see the guest's port, a second bind is EADDRINUSE, as
    natively. Those host sockets cannot be disconnected and aimed elsewhere (natively they can:
    here that would leave the sandbox's namespace)."""
    src = tmp_path / "published.c"
    src.write_text(_PUBLISHED_SERVER)
    subprocess.run(["gcc", "-O1", "-static", "-o", str(image_copy / "published"), str(src)], check=True)
    native_port = _free_port()
    native = run_native(["/published", str(native_port)], image_copy).stdout.decode().replace(str(native_port), "PORT")
    r = run_translated(["/published", "8080"], image_copy, timeout=60, extra=["-p", f"127.0.0.1:{_free_port()}:8080"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().replace("8080", "PORT").splitlines()
    assert lines[:6] == native.splitlines()[:6] == [
        "listener=0 0.0.0.0:PORT", "connect=0 ", "client_peer=0 127.0.0.1:PORT", "server_self=0 127.0.0.1:PORT",
        "sent=4 got=4 ping", "bind2=-1 Address already in use"]
    assert native.splitlines()[6:8] == ["disconnect_conn=0 ", "disconnect_listener=0 "]
    assert lines[6:] == ["disconnect_conn=-1 Operation not permitted", "disconnect_listener=-1 Operation not permitted",
                         "reconnect=-1 Transport endpoint is already connected"]


def test_publish_after_the_guest_closes_its_listener_the_host_refuses_and_a_new_listen_serves() -> None:
    port = _free_port()
    box = Sandbox(["-p", f"127.0.0.1:{port}:80", "--", "sh", "-c",
                   "echo one | nc -l -p 80; echo two | nc -l -p 80; echo done; sleep 30"])

    def fetch() -> bytes:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    data = c.recv(16)
                    if data:
                        return data
            except OSError:
                pass
            assert time.monotonic() < deadline and box.proc.poll() is None, "no answer"
            time.sleep(0.05)

    try:
        assert fetch() == b"one\n"
        assert fetch() == b"two\n"  # served by the second listener, bound again
        deadline = time.monotonic() + 10
        while True:  # the second nc has exited: nothing listens, the host refuses
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepted after the guest's listener closed"
            time.sleep(0.05)
        assert box.proc.stdout is not None
        assert box.proc.stdout.readline() == b"done\n"  # (the guest then sleeps: bounded)
    finally:
        box.stop()
