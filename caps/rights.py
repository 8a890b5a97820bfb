"""Rights: what a capability lets its holder do to the object it names."""
from __future__ import annotations

import enum
import functools


class Rights(enum.Flag):
    READ = enum.auto()
    WRITE = enum.auto()
    EXEC = enum.auto()      # execute a file (also chdir); walks are not checked per component
    CREATE = enum.auto()    # make a new name (file, dir, link, socket, fifo) in the subtree
    DELETE = enum.auto()    # remove or rename away a name in the subtree
    BIND = enum.auto()
    CONNECT = enum.auto()
    LISTEN = enum.auto()
    IOCTL = enum.auto()
    GRANT = enum.auto()     # may be copied or moved to another CSpace

    def __str__(self) -> str:
        return format_rights(self)


NONE = Rights(0)
ALL = Rights(sum(r.value for r in Rights))

# One letter per right, for the compact "rwxcd" form used in policy files.
LETTERS: dict[str, Rights] = {
    "r": Rights.READ, "w": Rights.WRITE, "x": Rights.EXEC, "c": Rights.CREATE, "d": Rights.DELETE,
    "b": Rights.BIND, "n": Rights.CONNECT, "l": Rights.LISTEN, "i": Rights.IOCTL, "g": Rights.GRANT,
}
NAMES: dict[str, Rights] = {r.name.lower(): r for r in Rights}  # type: ignore[union-attr]


def parse_rights(text: str) -> Rights:
    """Parse "rwx" letters ('-' is filler, so "r-x" works), or comma-separated names
    ("read,write"). Raises ValueError naming the offending letter or name."""
    s = text.strip().lower()
    if s in ("", "none", "-"):
        return NONE
    if s == "all":
        return ALL
    if "," in s or s in NAMES:
        out = NONE
        for name in (n.strip() for n in s.split(",")):
            if name not in NAMES:
                raise ValueError(f"unknown right {name!r} (names: {', '.join(NAMES)})")
            out |= NAMES[name]
        return out
    out = NONE
    for ch in s:
        if ch == "-":
            continue
        if ch not in LETTERS:
            raise ValueError(f"unknown right {ch!r} in {text!r} (letters: {''.join(LETTERS)}; "
                             f"or names: {', '.join(NAMES)})")
        out |= LETTERS[ch]
    return out


@functools.lru_cache(maxsize=256)  # every capability a sandbox starts with is logged with it
def format_rights(rights: Rights) -> str:
    """The letter form, in canonical order ("" for no rights)."""
    return "".join(ch for ch, r in LETTERS.items() if r & rights)
