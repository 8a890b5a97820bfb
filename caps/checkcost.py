"""`python3 -m caps.checkcost`: what authorize_path adds to a translated open (µs per check),
for a CSpace of about ten filesystem capabilities, cached and uncached."""
from __future__ import annotations

import timeit

from .cspace import CSpace
from .policy import parse_policy
from .rights import Rights

POLICY = """\
[filesystem]
"/" = "rx"
"/tmp" = "rwxcd"
"/data" = "r"
"/data/pub" = "rw"
"/home/user" = "rwxcd"
"/home/user/.ssh" = ""
"/var/log" = "rw"
"/srv/www" = "r"
"/opt/app" = "rx"
"/run" = "rwcd"
"""
PATHS = [b"/usr/lib/x86_64-linux-gnu/libc.so.6", b"/tmp/x", b"/data/pub/a/b", b"/etc/passwd"]


def _per_call(fn: object, n: int) -> float:
    best = min(timeit.repeat(fn, number=n, repeat=5))  # type: ignore[arg-type]
    empty = min(timeit.repeat(lambda: None, number=n, repeat=5))
    return (best - empty) / n * 1e6


def main(n: int = 200_000) -> None:
    policy = parse_policy(POLICY)
    cached = policy.build_cspace()
    uncached = CSpace()  # a second namespace: no per-path cache, every call walks the index
    for obj, rights in policy.filesystem_objects("other"):
        if rights:
            uncached.insert(obj, rights)
    print(f"{len(cached)} capabilities; µs per authorize_path (minus call overhead)")
    for p in PATHS:
        c = _per_call(lambda: cached.authorize_path(p, Rights.READ), n)
        u = _per_call(lambda: uncached.authorize_path(p, Rights.READ, "other"), n)
        print(f"  {p.decode():40s} cached {c:.2f}   uncached {u:.2f}")


if __name__ == "__main__":
    main()
