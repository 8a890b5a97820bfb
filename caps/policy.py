"""The sandbox policy file (TOML) and the initial CSpace it creates.

    [filesystem]            # guest path = rights; the most specific (longest) path wins
    "/" = "rx"
    "/tmp" = "rwxcd"        # r read, w write, x exec, c create, d delete, g grant
    "/data" = "r"
    [network]               # PROTO:ADDRESS:PORTS, see objects.NetEndpoint.parse
    bind = ["tcp:0.0.0.0:8080"]          # bind + listen
    connect = ["tcp:10.0.2.0/24:*"]
    [devices]
    allow = ["/dev/null", "/dev/tty"]    # read, write, ioctl
    "/dev/nvidia*" = "rwi"               # or a pattern with explicit rights (r, w, i, g)
    [process]
    spawn = true            # fork/clone (default true)
    tty = true              # the controlling terminal (default true)
    [limits]
    processes = 256
    open_files = 1024

"Most specific wins" is compiled into capabilities with holes: "/" above becomes a capability
on "/ minus {/tmp, /data}", so no capability ever grants more than its own rule says.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .cspace import CSpace, Limits
from .objects import GUEST_NS, DeviceClass, FsSubtree, NetEndpoint, SpawnRight, TtyRight, check_path, path_under
from .rights import Rights, format_rights, parse_rights

FS_RIGHTS = Rights.READ | Rights.WRITE | Rights.EXEC | Rights.CREATE | Rights.DELETE | Rights.GRANT
DEV_RIGHTS = Rights.READ | Rights.WRITE | Rights.IOCTL | Rights.GRANT
DEV_ALLOW = Rights.READ | Rights.WRITE | Rights.IOCTL
BIND_RIGHTS = Rights.BIND | Rights.LISTEN
CONNECT_RIGHTS = Rights.CONNECT

# The default sandbox. "The overlay writable": the guest's namespace is the read-only image
# under a RAM overlay, so write/create/delete on "/" change only the overlay (copy-up into
# memory), never the image itself; a more specific rule narrows any part of it.
DEFAULT_POLICY_TOML = """\
[filesystem]
"/" = "rwxcd"     # the image (read+exec) under the RAM overlay, which takes every write
"/tmp" = "rwxcd"

[network]         # the sandbox's own loopback (and ports forwarded in with -p); nothing outside
bind = ["tcp:0.0.0.0:*", "udp:0.0.0.0:*", "tcp:[::]:*", "udp:[::]:*"]
connect = ["tcp:127.0.0.0/8:*", "udp:127.0.0.0/8:*", "icmp:127.0.0.0/8:*", "tcp:[::1]:*", "udp:[::1]:*"]

[devices]
allow = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]

[process]
spawn = true
tty = true
"""


def default_policy_doc() -> dict[str, Any]:
    """DEFAULT_POLICY_TOML as tomllib reads it (a test checks they agree), made anew for each
    use: every `linuxabi run` starts from the default, and tomllib's import and parse cost
    ~5 ms of a cold start."""
    return {
        "filesystem": {"/": "rwxcd", "/tmp": "rwxcd"},
        "network": {
            "bind": ["tcp:0.0.0.0:*", "udp:0.0.0.0:*", "tcp:[::]:*", "udp:[::]:*"],
            "connect": ["tcp:127.0.0.0/8:*", "udp:127.0.0.0/8:*", "icmp:127.0.0.0/8:*", "tcp:[::1]:*",
                        "udp:[::1]:*"],
        },
        "devices": {"allow": ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]},
        "process": {"spawn": True, "tty": True},
    }


@dataclass(frozen=True)
class PolicyError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}: {self.message}"


class PolicyInvalid(Exception):
    def __init__(self, filename: str, errors: list[PolicyError]) -> None:
        super().__init__("\n".join(f"{filename}:{e}" for e in errors))
        self.filename = filename
        self.errors = errors


@dataclass
class Policy:
    filesystem: dict[bytes, Rights] = field(default_factory=dict)
    bind: list[NetEndpoint] = field(default_factory=list)
    connect: list[NetEndpoint] = field(default_factory=list)
    devices: dict[str, Rights] = field(default_factory=dict)
    spawn: bool = True
    tty: bool = True
    limits: Limits = field(default_factory=Limits)

    @property
    def rule_count(self) -> int:
        return len(self.filesystem) + len(self.bind) + len(self.connect) + len(self.devices)

    def filesystem_objects(self, ns: str = GUEST_NS) -> list[tuple[FsSubtree, Rights]]:
        """One subtree per rule, with holes where a more specific rule takes over."""
        out = []
        for path, rights in sorted(self.filesystem.items()):
            inner = [p for p in self.filesystem if p != path and path_under(p, path)]
            # Only the nearest inner rules need to be holes; deeper ones sit inside them.
            holes = frozenset(p for p in inner if not any(q != p and path_under(p, q) for q in inner))
            out.append((FsSubtree(ns, path, holes), rights))
        return out

    def build_cspace(self, name: str = "sandbox", *, audit: Any = None, ns: str = GUEST_NS) -> CSpace:
        cs = CSpace(name, audit=audit, limits=self.limits)
        for obj, rights in self.filesystem_objects(ns):
            if rights:  # an empty rule is only a hole in its parent
                cs.insert(obj, rights)
        for ep in self.bind:
            cs.insert(ep, BIND_RIGHTS)
        for ep in self.connect:
            cs.insert(ep, CONNECT_RIGHTS)
        for pattern, rights in self.devices.items():
            if rights:
                cs.insert(DeviceClass(pattern), rights)
        if self.spawn:
            cs.insert(SpawnRight(), Rights(0))
        if self.tty:
            cs.insert(TtyRight(), Rights.READ | Rights.WRITE | Rights.IOCTL)
        return cs


_made_ahead: list[Policy] = []


def default_policy() -> Policy:
    """A new Policy object each time (a sandbox's is its own); one made ahead is used first."""
    if _made_ahead:
        return _made_ahead.pop()
    return _default()


def make_default_policy_ahead() -> None:
    """Parse the default policy now, for the next default_policy() (a warm server's spare)."""
    _made_ahead[:] = [_default()]


def _default() -> Policy:
    policy, errors = _from_doc(default_policy_doc(), _Locator(DEFAULT_POLICY_TOML))
    if errors:
        raise PolicyInvalid("<default policy>", errors)
    return policy


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and check a policy file; PolicyInvalid lists every error with its line."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_policy(data.decode("utf-8", "replace"), os.fspath(path))


def check_policy(path: str | os.PathLike[str]) -> list[PolicyError]:
    """Every error in the file (empty if it is valid). OSError if it cannot be read."""
    with open(path, "rb") as f:
        data = f.read()
    return _parse(data.decode("utf-8", "replace"))[1]


def parse_policy(text: str, filename: str = "<policy>") -> Policy:
    policy, errors = _parse(text)
    if errors:
        raise PolicyInvalid(filename, errors)
    return policy


# -- parsing ----------------------------------------------------------------------------------

_TOML_POS = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


def _parse(text: str) -> tuple[Policy, list[PolicyError]]:
    import tomllib  # only where a policy file is given: ~4 ms of every start otherwise

    policy = Policy()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        line = int(m.group(1)) if m and m.group(1) else max(1, text.count("\n") + (not text.endswith("\n")))
        return policy, [PolicyError(line, f"TOML syntax: {_TOML_POS.sub('', msg)}")]
    return _from_doc(doc, _Locator(text))


def _from_doc(doc: dict[str, Any], loc: "_Locator") -> tuple[Policy, list[PolicyError]]:
    """The Policy a parsed document describes, and every error in it (lines found by ``loc``)."""
    policy = Policy()
    errors: list[PolicyError] = []

    def err(section: str | None, needle: str | None, message: str) -> None:
        errors.append(PolicyError(loc.find(section, needle), message))

    for key, value in doc.items():
        if not isinstance(value, dict):
            err(None, key, f"unknown key {key!r} (expected a section: {', '.join(_SECTIONS)})")
        elif key not in _SECTIONS:
            err(key, None, f"unknown section [{key}] (known: {', '.join(_SECTIONS)})")
        else:
            _SECTIONS[key](policy, value, _section_err(err, key))
    return policy, errors


_Err = Callable[[str | None, str], None]


def _section_err(err: Callable[[str | None, str | None, str], None], section: str) -> _Err:
    return lambda needle, msg: err(section, needle, f"[{section}] {msg}")


def _rights(value: object, allowed: Rights, what: str, err: _Err, needle: str) -> Rights | None:
    if not isinstance(value, str):
        err(needle, f"{needle!r}: rights must be a string like \"rwx\", not {type(value).__name__}")
        return None
    try:
        r = parse_rights(value)
    except ValueError as e:
        err(needle, f"{needle!r}: {e}")
        return None
    if r & ~allowed:
        err(needle, f"{needle!r}: right(s) {format_rights(r & ~allowed)!r} do not apply to {what} "
                    f"(allowed: {format_rights(allowed)})")
        return None
    return r


def _filesystem(policy: Policy, table: dict[str, Any], err: _Err) -> None:
    for key, value in table.items():
        path = os.fsencode(key)
        try:
            check_path(path)
        except ValueError:
            err(key, f"{key!r}: not an absolute, normalised guest path")
            continue
        r = _rights(value, FS_RIGHTS, "files", err, key)
        if r is not None:
            policy.filesystem[path] = r


def _network(policy: Policy, table: dict[str, Any], err: _Err) -> None:
    for key, value in table.items():
        if key not in ("bind", "connect"):
            err(key, f"unknown key {key!r} (known: bind, connect)")
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            err(key, f"{key}: expected a list of endpoint strings like \"tcp:10.0.2.0/24:*\"")
            continue
        for item in value:
            try:
                getattr(policy, key).append(NetEndpoint.parse(item))
            except ValueError as e:
                err(item, f"{key}: {e}")


def _devices(policy: Policy, table: dict[str, Any], err: _Err) -> None:
    for key, value in table.items():
        if key == "allow":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                err(key, "allow: expected a list of device paths or patterns like \"/dev/null\"")
                continue
            entries = [(v, DEV_ALLOW) for v in value]
        elif key.startswith("/"):
            r = _rights(value, DEV_RIGHTS, "devices", err, key)
            if r is None:
                continue
            entries = [(key, r)]
        else:
            err(key, f"unknown key {key!r} (expected allow, or a \"/dev/...\" pattern = rights)")
            continue
        for pattern, r in entries:
            if not pattern.startswith("/dev/"):
                err(pattern, f"{pattern!r}: device paths are under /dev/")
                continue
            policy.devices[pattern] = policy.devices.get(pattern, Rights(0)) | r


def _process(policy: Policy, table: dict[str, Any], err: _Err) -> None:
    for key, value in table.items():
        if key not in ("spawn", "tty"):
            err(key, f"unknown key {key!r} (known: spawn, tty)")
        elif not isinstance(value, bool):
            err(key, f"{key}: expected true or false")
        else:
            setattr(policy, key, value)


def _limits(policy: Policy, table: dict[str, Any], err: _Err) -> None:
    values: dict[str, int] = {}
    for key, value in table.items():
        if key not in ("processes", "open_files"):
            err(key, f"unknown key {key!r} (known: processes, open_files)")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            err(key, f"{key}: expected a positive integer")
        else:
            values[key] = value
    policy.limits = Limits(**values)


_SECTIONS: dict[str, Callable[[Policy, dict[str, Any], _Err], None]] = {
    "filesystem": _filesystem, "network": _network, "devices": _devices, "process": _process,
    "limits": _limits,
}


class _Locator:
    """Finds the line of a key or string value in the source, for semantic errors (tomllib
    returns plain dicts, without positions)."""

    _HEADER = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.sections: dict[str, tuple[int, int]] = {}  # name -> (header index, end index)
        current, start = "", 0
        for i, line in enumerate(self.lines):
            m = self._HEADER.match(line)
            if m:
                self._close(current, start, i)
                current, start = m.group(1).strip("\"'"), i
        self._close(current, start, len(self.lines))

    def _close(self, name: str, start: int, end: int) -> None:
        self.sections.setdefault(name, (start, end))

    def find(self, section: str | None, needle: str | None) -> int:
        start, end = self.sections.get(section or "", (0, len(self.lines)))
        if needle is not None:
            quoted = (f'"{needle}"', f"'{needle}'")
            bare = re.compile(rf"^\s*{re.escape(needle)}\s*=")
            for i in range(start, end):
                line = self.lines[i]
                code = line.split("#", 1)[0] if "#" not in needle else line
                if bare.match(code) or any(q in code for q in quoted):
                    return i + 1
        return start + 1
