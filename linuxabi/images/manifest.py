"""What an image holds, as JSON beside it (NAME.manifest.json): what was asked for, and each
package's version and .deb SHA-256."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from caps.digest import sha256_hex

FORMAT = 1


def request_key(packages: list[str], with_recommends: bool, exclude: list[str], keep_docs: bool) -> str:
    """Identifies a build request: the same key means the same image (no rebuild)."""
    spec = {"format": FORMAT, "packages": sorted(set(packages)), "recommends": with_recommends,
            "exclude": sorted(set(exclude)), "docs": keep_docs}
    return sha256_hex(json.dumps(spec, sort_keys=True).encode())[:16]


@dataclass
class PackageEntry:
    name: str
    version: str
    arch: str
    sha256: str
    size: int  # of the .deb
    deb: str


@dataclass
class Manifest:
    name: str
    key: str
    requested: list[str]
    with_recommends: bool = False
    exclude: list[str] = field(default_factory=list)
    keep_docs: bool = False
    packages: list[PackageEntry] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    built_at: str = ""
    build_seconds: float = 0.0
    image_bytes: int = 0
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        data["packages"] = [PackageEntry(**p) for p in data.get("packages", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        return cls.from_json(path.read_text())
