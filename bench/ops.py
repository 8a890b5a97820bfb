"""The operations a benchmark run measures: microbench ops and whole-program workloads.

A microbench op's figure is the guest's own ns_per_op (start-up and set-up excluded); a
workload's figure is the wall time of the whole process, start-up included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .build import DYNAMIC_TRUE, GUEST_BINARY, PYTHON3, TAR_TREE


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # "micro", "workload" or "server"
    argv: tuple[str, ...]  # for a workload: the guest command; for a micro op: unused
    iters: int = 0  # micro: iterations of a full run (~0.1-0.3 s natively)
    quick_iters: int = 0  # micro: iterations under --quick
    expect: str | None = None  # workload: a line its stdout must contain (so a failure is seen)
    close: bool = False  # server: each request on a new connection (Connection: close)
    runners: tuple[str, ...] | None = None  # the runners that can run it; None: every one
    link: bool = False  # micro: against an echo peer across a network link (bench/link.py)

    def guest_argv(self, *, quick: bool, max_seconds: float) -> list[str]:
        if self.kind == "workload":
            return list(self.argv)
        iters = self.quick_iters if quick else self.iters
        return [GUEST_BINARY, self.name, str(iters), f"{max_seconds:g}"]


def micro(name: str, iters: int) -> Op:
    return Op(name, "micro", (), iters=iters, quick_iters=max(3, iters // 200))


def link_micro(name: str, iters: int) -> Op:
    # The peer is outside the guest, across a veth pair natively and linuxabi's own stack and
    # virtio-net device under linuxabi: native and linuxabi only (a peer has no --net tap).
    return Op(name, "micro", (), iters=iters, quick_iters=max(3, iters // 200), runners=("native", "linuxabi"),
              link=True)


def workload(name: str, script: str | list[str], expect: str | None = None) -> Op:
    argv = ("/bin/sh", "-c", script) if isinstance(script, str) else tuple(script)
    return Op(name, "workload", argv, expect=expect)


def server(name: str, *, close: bool) -> Op:
    # A peer's sandbox would need port forwarding of its own: native and linuxabi only.
    return Op(name, "server", (), close=close, runners=("native", "linuxabi"))


MICRO_OPS: tuple[Op, ...] = (
    micro("getpid", 1_000_000),
    micro("trapped_noop", 1_000_000),
    micro("stat", 200_000),
    micro("fstat", 300_000),
    micro("open_close", 100_000),
    micro("pread_tmpfs", 300_000),
    micro("pread_image", 300_000),
    micro("write_devnull", 1_000_000),
    micro("getdents_1000", 1_000),
    micro("pipe_pingpong", 5_000),
    micro("fork_exit_wait", 1_000),
    micro("fork_exec_wait_static", 300),
    micro("mmap_munmap_64k", 50_000),
    micro("tcp_rtt_loopback", 20_000),  # 1-byte write+read through an echoing peer
    micro("tcp_connect_loopback", 2_000),  # socket+connect+close; the peer accepts
    link_micro("tcp_rtt_link", 5_000),  # 1-byte write+read, an echo peer across the link
)

WORKLOADS: tuple[Op, ...] = (
    workload("startup_true", ["/bin/busybox", "true"]),
    # `true` is a sh builtin: name busybox so that each iteration is a fork+exec.
    workload("sh_exec_loop_100", "for i in $(seq 100); do /bin/busybox true; done"),
    workload("seq_20000_wc", "seq 20000 | wc -l", expect="20000"),
    workload("ls_lR_usr", "ls -lR /usr >/dev/null"),
    workload("tar_1000_files", f"tar cf /tmp/x.tar {TAR_TREE}"),
    # Dynamically linked programs from Debian packages (ld.so and libc from the image).
    workload("dyn_true_loop_100", f"for i in $(seq 100); do {DYNAMIC_TRUE}; done"),
    workload("python3_startup_x10", f"for i in $(seq 10); do {PYTHON3} -c pass; done"),
)

# nginx under wrk: per-request time (1 / requests per second), keep-alive and not.
SERVERS: tuple[Op, ...] = (
    server("nginx_keepalive", close=False),
    server("nginx_close", close=True),
)

ALL_OPS: tuple[Op, ...] = MICRO_OPS + WORKLOADS + SERVERS
GROUPS = {"micro": MICRO_OPS, "workloads": WORKLOADS, "servers": SERVERS, "all": ALL_OPS}


def select(spec: str | None) -> list[Op]:
    """Ops named in a comma list of op names and groups (micro, workloads, servers, all); default all."""
    if not spec:
        return list(ALL_OPS)
    by_name = {op.name: op for op in ALL_OPS}
    chosen: list[Op] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in GROUPS:
            new = list(GROUPS[item])
        elif item in by_name:
            new = [by_name[item]]
        elif re.fullmatch(r"getdents_\d+", item):  # any directory size the guest supports
            new = [micro(item, max(1, 1_000_000 // int(item.split("_")[1])))]
        else:
            raise ValueError(f"unknown op {item!r} (ops: {', '.join(by_name)}; groups: {', '.join(GROUPS)})")
        chosen += [op for op in new if op not in chosen]
    return chosen


_RESULT = re.compile(r"^op=(\S+) iters=(\d+) ns_per_op=([0-9.eE+-]+)\s*$", re.M)


@dataclass(frozen=True)
class MicroResult:
    op: str
    iters: int
    ns_per_op: float


def parse_microbench(stdout: str) -> MicroResult | None:
    """The guest's result line, or None when there is none (the run failed)."""
    m = _RESULT.search(stdout)
    if m is None:
        return None
    return MicroResult(m.group(1), int(m.group(2)), float(m.group(3)))
