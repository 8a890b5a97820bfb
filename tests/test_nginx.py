"""nginx (Debian 12's 1.22) as an acceptance test: served under translation through
``linuxabi run --image nginx -p 127.0.0.1:PORT:80``, and natively in a chroot of the same image
(its twin, the oracle), fetched from the host with curl and wrk.

The image is ``linuxabi image build nginx -p nginx,dash,coreutils`` (cached in the default store,
so ``linuxabi run --image nginx`` finds it). Images are read-only, so the guest's own shell
writes the config (/tmp/nginx.conf), a 1 KiB index.html and a 10 MiB big.bin (from stdin) into
/srv/www before it execs nginx; both sides run the same script, so the two servers differ only in
the listen address: port 80 in the sandbox's network, a free high port on the host's 127.0.0.1 for
the native twin. The native twin sees the image through a private read-only bind mount, with
tmpfs on /srv, /tmp and /dev, in fresh mount and pid namespaces (nginx's master is pid 1 there,
as in the sandbox).

``NginxServer`` is the helper (tools/nginx_rps.py uses it too): ``with NginxServer("native") as s:
s.url("/index.html")``.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from oracle import _NATIVE, GUEST_ENV, REPO

from linuxabi.images import build_image
from linuxabi.images.progress import Quiet

IMAGE = "nginx"
PACKAGES = ["nginx", "dash", "coreutils"]  # dash: /bin/sh; coreutils: mkdir, cat, touch
GUEST_PORT = 80
START_TIMEOUT = 20.0
MTIME = 1700000000  # both sides' files get this mtime, so Last-Modified and ETag agree


def _index_page() -> bytes:
    head = b"<!DOCTYPE html>\n<html><head><title>linuxabi nginx test</title></head><body>\n"
    tail = b"</body></html>\n"
    lines, i = [], 0
    while len(head) + sum(map(len, lines)) + len(tail) < 1024:
        lines.append(b"<p>line %03d of the one-KiB page served by nginx</p>\n" % i)
        i += 1
    body = head + b"".join(lines)
    body = body[:1024 - len(tail) - 1] + b"\n" + tail
    assert len(body) == 1024
    return body


INDEX = _index_page()
BIG_SIZE = 10 << 20
BIG_SHA256 = "769d7b850cf0bb56278891483500166fd2b1494725ef2b7543a4e78fd0e65dfc"


def big_file() -> bytes:
    """10 MiB of reproducible pseudo-random bytes (sha256 BIG_SHA256)."""
    data = random.Random(20240601).randbytes(BIG_SIZE)
    assert hashlib.sha256(data).hexdigest() == BIG_SHA256
    return data


def nginx_conf(listen: str) -> str:
    # "daemon off" is given with -g (a second "daemon" in the file would be a duplicate).
    return (
        "master_process on;\nworker_processes 1;\nerror_log stderr;\npid /tmp/nginx.pid;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        "    client_body_temp_path /tmp/client_body;\n    proxy_temp_path /tmp/proxy;\n"
        "    fastcgi_temp_path /tmp/fastcgi;\n    uwsgi_temp_path /tmp/uwsgi;\n    scgi_temp_path /tmp/scgi;\n"
        f"    server {{ listen {listen}; root /srv/www; location / {{}} }}\n"
        "}\n")


def guest_script(listen: str) -> str:
    """The guest's shell: content and config, then ``exec nginx``; big.bin comes on stdin."""
    q = shlex.quote
    return (
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin && umask 022 && mkdir -p /srv/www && "
        f"printf %s {q(INDEX.decode())} > /srv/www/index.html && "
        "cat > /srv/www/big.bin && "
        f"touch -d @{MTIME} /srv/www/index.html /srv/www/big.bin /srv/www && "
        f"printf %s {q(nginx_conf(listen))} > /tmp/nginx.conf && "
        "exec /usr/sbin/nginx -c /tmp/nginx.conf -g 'daemon off;' < /dev/null")


def nginx_image() -> Path:
    """The image (built on first use; a no-op when it is up to date)."""
    return build_image(IMAGE, PACKAGES, progress=Quiet()).root


def free_port() -> int:
    """A port free on 127.0.0.1 now (bind port 0, read it back, let it go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The native twin: the image read-only (a private bind mount, so nothing reaches the cache),
# /srv a tmpfs for the content, then oracle's chroot (/proc, tmpfs /tmp and /dev).
_NATIVE_NGINX = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
                 'mount -t tmpfs -o mode=755 tmpfs "$0/srv" && ' + _NATIVE)


class ServerFailed(RuntimeError):
    pass


class NginxServer:
    """nginx from the image, ``kind`` "native" (chroot) or "translated" (linuxabi run -p),
    answering on 127.0.0.1:port. Started by ``start()`` (or ``with``), stopped by ``stop()``:
    SIGTERM to the process group it created (the launcher's PID), then SIGKILL."""

    def __init__(self, kind: str, port: int | None = None) -> None:
        if kind not in ("native", "translated"):
            raise ValueError(kind)
        self.kind = kind
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.start_seconds = 0.0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def command(self) -> list[str]:
        if self.kind == "native":
            script = guest_script(f"127.0.0.1:{self.port}")
            return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                    "/bin/sh", "-c", _NATIVE_NGINX, str(nginx_image()), "/bin/sh", "-c", script]
        nginx_image()
        return [sys.executable, "-m", "linuxabi", "run", "--image", IMAGE,
                "-p", f"127.0.0.1:{self.port}:{GUEST_PORT}", "--", "/bin/sh", "-c", guest_script(str(GUEST_PORT))]

    def log(self) -> str:
        if self.workdir is None:
            return ""
        out = []
        for name in ("stdout", "stderr"):
            p = self.workdir / name
            if p.exists():
                out.append(f"--- {self.kind} {name}:\n" + p.read_text(errors="replace"))
        return "\n".join(out)

    # What a variant (tests/test_nginx_uplink.py) changes: where its files go, whether it runs
    # natively (the guest's environment then), and how it is asked whether it answers.
    def _new_workdir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"nginx_helper_{self.kind}_", dir="/tmp"))

    def _native(self) -> bool:
        return self.kind == "native"

    def _answers(self) -> str | None:
        """None once GET /index.html answers 200; else what happened instead."""
        try:
            status = http_raw(self.port, "/index.html", timeout=1.0).split(b"\r\n", 1)[0]
        except OSError as e:
            return repr(e)
        return None if status == b"HTTP/1.1 200 OK" else repr(status)

    def start(self) -> "NginxServer":
        t0 = time.monotonic()
        self.workdir = self._new_workdir()
        (self.workdir / "big.bin").write_bytes(big_file())
        with open(self.workdir / "big.bin", "rb") as stdin, open(self.workdir / "stdout", "wb") as out, \
                open(self.workdir / "stderr", "wb") as err:
            # (a launcher under `ip netns exec` execs in place: the session is still its pid's)
            self.proc = subprocess.Popen(self.command(), stdin=stdin, stdout=out, stderr=err, cwd=REPO,
                                         env=dict(GUEST_ENV) if self._native() else None,
                                         start_new_session=True)
        try:
            self._wait_ready(t0 + START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Until it answers (a forwarder may accept before nginx listens)."""
        assert self.proc is not None
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.kind} nginx exited with status {self.proc.returncode} before "
                                   f"answering on {self.url()}\n{self.log()}")
            answer = self._answers()
            if answer is None:
                return
            last = answer
            time.sleep(0.1)
        raise ServerFailed(f"{self.kind} nginx did not answer on {self.url()} within "
                           f"{START_TIMEOUT:.0f}s (last: {last})\n{self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # Our own session's group (pgid == the launcher's PID): nginx's master is in it on the
            # native side (unshare itself ignores SIGTERM); linuxabi forwards SIGTERM to its guest.
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None and proc.poll() is None:
            proc.wait(10)
        if self.workdir is not None:
            (self.workdir / "big.bin").unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "NginxServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def http_raw(port: int, path: str, *, method: str = "GET", headers: str = "", timeout: float = 10.0) -> bytes:
    """One HTTP/1.1 request with Connection: close; the response's bytes as they came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


def without_date(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + sep + body


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", *args], capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"curl {' '.join(args)}: status {r.returncode}: {r.stderr.decode()}"
    return r


WRK_RPS = re.compile(rb"^Requests/sec:\s+([\d.]+)", re.M)
WRK_REQUESTS = re.compile(rb"^\s*(\d+) requests in ", re.M)
WRK_SOCKET_ERRORS = re.compile(rb"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON_2XX = re.compile(rb"Non-2xx or 3xx responses: (\d+)")


def wrk(url: str, *, threads: int = 1, connections: int = 10, seconds: int = 2,
        close: bool = False) -> dict[str, float]:
    """wrk's figures: requests, rps, socket errors (summed; 0 when wrk prints none), non_2xx."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    r = subprocess.run([*cmd, url], capture_output=True, timeout=seconds + 60)
    assert r.returncode == 0, f"{' '.join(cmd)}: status {r.returncode}: {r.stdout.decode()}{r.stderr.decode()}"
    rps, reqs = WRK_RPS.search(r.stdout), WRK_REQUESTS.search(r.stdout)
    assert rps and reqs, r.stdout.decode()
    errs = WRK_SOCKET_ERRORS.search(r.stdout)
    non2xx = WRK_NON_2XX.search(r.stdout)
    return {"requests": float(reqs.group(1)), "rps": float(rps.group(1)),
            "socket_errors": float(sum(map(int, errs.groups()))) if errs else 0.0,
            "non_2xx": float(non2xx.group(1)) if non2xx else 0.0, "output": r.stdout.decode()}  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["native", "translated"])
def server(request: pytest.FixtureRequest) -> Iterator[NginxServer]:
    s = NginxServer(request.param)
    try:
        yield s.start()
    finally:
        s.cleanup()


def test_index_page(server: NginxServer) -> None:
    r = curl("-H", "Connection: close", server.url("/index.html"))
    assert r.stdout == INDEX


def test_big_file_sha256(server: NginxServer) -> None:
    r = curl("-H", "Connection: close", server.url("/big.bin"))
    assert len(r.stdout) == BIG_SIZE
    assert hashlib.sha256(r.stdout).hexdigest() == BIG_SHA256


def test_keepalive_reuses_connection(server: NginxServer, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    r = curl("-o", str(a), "-o", str(b), "-w", "%{num_connects}\n",
             server.url("/big.bin"), server.url("/big.bin"))
    assert r.stdout.split() == [b"1", b"0"]  # the second transfer went over the first connection
    for f in (a, b):
        assert hashlib.sha256(f.read_bytes()).hexdigest() == BIG_SHA256
    r = curl("-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
             server.url("/index.html"), server.url("/index.html"))
    assert r.stdout.split() == [b"1", b"0"]


def test_connection_close_reconnects(server: NginxServer) -> None:
    r = curl("-H", "Connection: close", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
             server.url("/index.html"), server.url("/index.html"))
    assert r.stdout.split() == [b"1", b"1"]


def test_wrk_keepalive(server: NginxServer) -> None:
    w = wrk(server.url("/index.html"))
    assert w["requests"] > 0, w["output"]
    assert w["socket_errors"] == 0 and w["non_2xx"] == 0, w["output"]


def test_error_log_clean(server: NginxServer) -> None:
    assert server.workdir is not None
    log = (server.workdir / "stderr").read_text(errors="replace")
    assert not re.search(r"\[(emerg|alert|crit)\]", log), log


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[NginxServer, NginxServer]]:
    native, translated = NginxServer("native"), NginxServer("translated")
    try:
        native.start()
        translated.start()
        yield native, translated
    finally:
        translated.cleanup()
        native.cleanup()


@pytest.mark.parametrize("method,path,headers", [
    ("GET", "/index.html", ""),
    ("HEAD", "/index.html", ""),
    ("GET", "/index.html", f"If-Modified-Since: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(MTIME))}\r\n"),
    ("GET", "/big.bin", "Range: bytes=1000-2023\r\n"),
    ("GET", "/missing.html", ""),
], ids=["get", "head", "if-modified-since", "range", "404"])
def test_translated_matches_native(twins: tuple[NginxServer, NginxServer], method: str, path: str,
                                   headers: str) -> None:
    """The same request to both: the same bytes, status line, headers (Date aside) and body."""
    native, translated = twins
    n = http_raw(native.port, path, method=method, headers=headers)
    t = http_raw(translated.port, path, method=method, headers=headers)
    assert n.startswith(b"HTTP/1.1 ")
    if path == "/index.html" and method == "GET" and not headers:
        assert n.endswith(b"\r\n\r\n" + INDEX)
    assert without_date(t) == without_date(n)
