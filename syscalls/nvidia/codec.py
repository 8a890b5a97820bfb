"""Struct codecs built from the tables' layouts: bytes <-> named fields.

A layout is flattened into *leaves*: every scalar, pointer or enum field (decoded as an int),
and every array, union or bitfield storage unit (kept as raw bytes, since only whole values
are ever checked or translated in those). Encoding writes each leaf at its offset into a
zeroed buffer, so what the shim forwards is exactly the set of fields it decoded: padding and
bytes no field covers are never passed from the guest to the driver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_SIGNED = frozenset({"int", "NvS8", "NvS16", "NvS32", "NvS64", "int8_t", "int16_t", "int32_t",
                     "int64_t", "long", "short", "char", "signed char"})

@dataclass(frozen=True)
class Leaf:
    path: str  # C member path ("params.hClass", "pci_info.domain"); "" parts for anonymous members
    offset: int
    size: int
    is_int: bool  # decoded as an int (scalar/pointer/enum of 1, 2, 4 or 8 bytes), else raw bytes
    signed: bool
    pointer: bool
    fd: bool
    handle: bool
    ctype: str


class Layout:
    """One struct's layout: its size and leaves, with field access by path."""

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        self.name = name
        self.size = int(spec["size"])
        leaves: list[Leaf] = []
        _flatten(spec.get("fields", ()), "", leaves)
        seen: set[tuple[int, int, str]] = set()
        uniq = []
        for leaf in leaves:  # bitfields sharing a storage unit collapse into one leaf
            key = (leaf.offset, leaf.size, leaf.path)
            if key not in seen:
                seen.add(key)
                uniq.append(leaf)
        self.leaves: tuple[Leaf, ...] = tuple(uniq)
        self.by_path: dict[str, Leaf] = {leaf.path: leaf for leaf in self.leaves}
        self.pointer_paths = tuple(leaf.path for leaf in self.leaves if leaf.pointer)
        self.fd_paths = tuple(leaf.path for leaf in self.leaves if leaf.fd)

    def __repr__(self) -> str:
        return f"<Layout {self.name} {self.size}B {len(self.leaves)} leaves>"

    def leaf(self, path: str) -> Leaf:
        try:
            return self.by_path[path]
        except KeyError:
            raise KeyError(f"{self.name} has no field {path!r}") from None

    def has(self, path: str) -> bool:
        return path in self.by_path

    def decode(self, raw: bytes) -> dict[str, int | bytes]:
        if len(raw) < self.size:
            raise ValueError(f"{self.name}: {len(raw)} bytes, needs {self.size}")
        return {leaf.path: _get(raw, leaf) for leaf in self.leaves}

    def encode(self, values: Mapping[str, int | bytes]) -> bytes:
        buf = bytearray(self.size)
        for leaf in self.leaves:
            v = values.get(leaf.path)
            if v is not None:
                _put(buf, leaf, v)
        return bytes(buf)

    def get(self, buf: bytes | bytearray, path: str) -> int | bytes:
        return _get(buf, self.leaf(path))

    def set(self, buf: bytearray, path: str, value: int | bytes) -> None:
        _put(buf, self.leaf(path), value)


def _flatten(fields: Iterable[Mapping[str, Any]], prefix: str, out: list[Leaf]) -> None:
    for f in fields:
        name = f.get("name")
        path = f"{prefix}.{name}" if prefix and name else (name or prefix)
        kind = f.get("kind")
        off, size = int(f["offset"]), int(f["size"])
        if kind == "struct" and f.get("fields") and "bit_offset" not in f:
            _flatten(f["fields"], path, out)
            continue
        is_int = kind in ("scalar", "pointer", "enum") and size in (1, 2, 4, 8) and "bit_offset" not in f
        out.append(Leaf(path=path or f"@{off}", offset=off, size=size, is_int=is_int,
                        signed=is_int and str(f.get("type")) in _SIGNED,
                        pointer=bool(f.get("is_pointer")), fd=bool(f.get("is_fd")),
                        handle=bool(f.get("is_handle")), ctype=str(f.get("type"))))


def _get(buf: bytes | bytearray, leaf: Leaf) -> int | bytes:
    chunk = bytes(buf[leaf.offset:leaf.offset + leaf.size])
    if leaf.is_int:
        return int.from_bytes(chunk, "little", signed=leaf.signed)
    return chunk


def _put(buf: bytearray, leaf: Leaf, value: int | bytes) -> None:
    if isinstance(value, int):
        if leaf.is_int:
            value = (value & ((1 << (8 * leaf.size)) - 1)).to_bytes(leaf.size, "little")
        else:
            raise TypeError(f"{leaf.path} is raw bytes, not an int")
    if len(value) != leaf.size:
        raise ValueError(f"{leaf.path}: {len(value)} bytes for a {leaf.size}-byte field")
    buf[leaf.offset:leaf.offset + leaf.size] = value


class Layouts:
    """Layouts of one Abi's structs, built on first use."""

    def __init__(self, structs: Mapping[str, Any]) -> None:
        self._structs = structs
        self._cache: dict[str, Layout] = {}

    def __call__(self, name: str) -> Layout:
        lay = self._cache.get(name)
        if lay is None:
            spec = self._structs.get(name)
            if spec is None:
                raise KeyError(f"no layout for {name}")
            lay = self._cache[name] = Layout(name, spec)
        return lay

    def __contains__(self, name: str) -> bool:
        return name in self._structs
