"""Server workloads: nginx's requests per second under wrk, natively and under linuxabi.

The servers are the nginx acceptance test's (tests/test_nginx.py: the same image, content and
config; one worker, a 1 KiB page): natively nginx runs in a chroot of the image in fresh mount
and pid namespaces, under linuxabi it runs with ``-p 127.0.0.1:PORT:80``; wrk (one thread, ten
connections) runs on the host's loopback. Each sample starts its own server, measures, and
stops it (its process group, by the launcher's PID), so no two servers ever share the CPUs.

A sample's figure is seconds per request (1 / requests per second), so that "x native" reads
as a slowdown like every other row.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import ModuleType

from .runners import Sample

TESTS = Path(__file__).resolve().parent.parent / "tests"
CONNECTIONS = 10
SECONDS = 3
QUICK_SECONDS = 1
PAGE = "/index.html"


def _helpers() -> ModuleType:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import test_nginx

    return test_nginx


def prepare() -> str | None:
    """Build the nginx image if needed (apt-get download on first use); why not, or None."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (apt-get install wrk)"
    try:
        _helpers().nginx_image()
    except Exception as e:  # an image that cannot be built: the rows say why
        return f"nginx image: {e}"
    return None


def sample(op_name: str, runner: str, round_no: int, *, close: bool, quick: bool) -> Sample:
    helpers = _helpers()
    server = helpers.NginxServer("native" if runner == "native" else "translated")
    try:
        try:
            server.start()
        except helpers.ServerFailed as e:
            return Sample(op_name, runner, round_no, None, error=str(e).splitlines()[0])
        w = helpers.wrk(server.url(PAGE), connections=CONNECTIONS, seconds=QUICK_SECONDS if quick else SECONDS,
                        close=close)
    except AssertionError as e:  # wrk failed
        return Sample(op_name, runner, round_no, None, error=str(e).splitlines()[0][:200])
    finally:
        server.cleanup()
    if w["socket_errors"] or w["non_2xx"] or not w["rps"]:
        return Sample(op_name, runner, round_no, None,
                      error=f"wrk: {w['socket_errors']:.0f} socket errors, {w['non_2xx']:.0f} non-2xx")
    return Sample(op_name, runner, round_no, 1.0 / w["rps"], iters=int(w["requests"]))
