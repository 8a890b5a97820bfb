"""`python3 -m bench.capcost`: what the capability checks add to translated calls.

Runs the microbench guest's ``stat`` and ``open_close`` loops under linuxabi in three
configurations, rounds interleaved so that machine drift hits all three alike:
- off:       no guard installed (Linux's own permission checks only): the baseline;
- allow-all: one capability "/" with every right (the check runs, and always passes);
- default:   the default policy (the check runs against several capabilities with holes).
Prints, per configuration, the median of the guest's ns per call (end to end, trap included:
on small VMs the fd hand-over's cross-CPU wake-ups make open_close swing by tens of µs) and of
the translator's own time in the op's trapped syscall (the handler, where the check runs),
and each ratio to "off".
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from linuxabi.image import default_image

from .build import GUEST_BINARY, microbench_binary, prepare_image

REPO = Path(__file__).resolve().parent.parent
MODES = ("off", "allow-all", "default")
ALLOW_ALL = '[filesystem]\n"/" = "rwxcdg"\n[devices]\n"/dev/*" = "rwi"\n'

# The child: the embedding API, with the guard taken out for "off".
_CHILD = """
import json, sys
from caps import parse_policy
from linuxabi.api import Sandbox, SandboxConfig
from syscalls.dispatch import Dispatcher
from syscalls.table import SYSCALLS
mode, root, audit, *argv = sys.argv[1:]
policy = parse_policy(sys.stdin.read()) if mode == "allow-all" else None
d = Dispatcher(profile=True)
sb = Sandbox(SandboxConfig(root=root, policy=policy, audit=audit, control=False), dispatcher=d)
if mode == "off":
    sb.kernel.guard = None
    sb.vfs.guard = None
rc = sb.run(argv)
nr = max(d.counts, key=d.counts.get)  # the op's trapped syscall
print("HANDLER", SYSCALLS[nr].name, d.time_ns[nr] / d.counts[nr], file=sys.stderr)
sys.exit(rc)
"""


def _sample(mode: str, root: Path, audit: Path, op: str, iters: int) -> tuple[float, float, str]:
    r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(root), str(audit), GUEST_BINARY, op, str(iters), "2"],
                       input=ALLOW_ALL, capture_output=True, text=True, cwd=REPO, timeout=120)
    m = re.search(r"ns_per_op=([0-9.]+)", r.stdout)
    h = re.search(r"HANDLER (\S+) ([0-9.]+)", r.stderr)
    if r.returncode != 0 or m is None or h is None:
        raise RuntimeError(f"{mode} {op}: rc={r.returncode} {r.stderr.strip()[-300:]}")
    return float(m.group(1)), float(h.group(2)), h.group(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.capcost", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=50_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cap-bench-") as tmp:
        root = prepare_image(default_image(), Path(tmp) / "image", microbench_binary(), dev_nodes=False)
        audit = Path(tmp) / "audit.log"
        results: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
        for _ in range(args.rounds):
            for op in ("stat", "open_close"):
                for mode in MODES:
                    results.setdefault((op, mode), []).append(_sample(mode, root, audit, op, args.iters))
    print(f"{'':<26} " + " ".join(f"{m:>10}" for m in MODES) + f"   ns (median of {args.rounds}); ratio to off")
    for op in ("stat", "open_close"):
        for i, what in ((0, "guest, per call"), (1, f"handler {results[(op, 'off')][0][2]}")):
            med = {m: statistics.median(float(x[i]) for x in results[(op, m)]) for m in MODES}
            print(f"{op + ' ' + what:<26} " + " ".join(f"{med[m]:10.0f}" for m in MODES) + "   "
                  + "  ".join(f"{m} {med[m] / med['off']:.3f}" for m in MODES[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
