"""Compiling cases with gcc into a cache keyed by source hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conformance.cases import HEADER_NAME, Program

CC = "gcc"
COMMON_FLAGS = ("-O1", "-std=gnu11", "-Wall")
STATIC_FLAGS = (*COMMON_FLAGS, "-static")
DYNAMIC_FLAGS = COMMON_FLAGS


class BuildError(Exception):
    """A case failed to compile."""


@dataclass(frozen=True)
class Built:
    program: Program
    binary: Path
    warnings: str = ""  # gcc's diagnostics when it was compiled in this call


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "linuxabi" / "conformance"


def flags_for(dynamic: bool) -> tuple[str, ...]:
    return DYNAMIC_FLAGS if dynamic else STATIC_FLAGS


def cache_key(source: Path, header: Path, flags: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for part in (source.read_bytes(), header.read_bytes(), " ".join(flags).encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:20]


def binary_path(program: Program, cache_dir: Path, dynamic: bool) -> Path:
    flags = flags_for(dynamic)
    key = cache_key(program.source, program.source.parent / HEADER_NAME, flags)
    suffix = ".dyn" if dynamic else ""
    return cache_dir / f"{program.name}-{key}{suffix}"


def compile_program(program: Program, cache_dir: Path, dynamic: bool = False) -> Built:
    """Compile one program unless the cache already holds its binary."""
    target = binary_path(program, cache_dir, dynamic)
    if target.exists():
        return Built(program, target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{program.name}-")
    os.close(fd)
    cmd = [CC, *flags_for(dynamic), "-I", str(program.source.parent),
           "-o", tmp_name, str(program.source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        os.unlink(tmp_name)
        raise BuildError(f"{program.source.name}: gcc failed\n{proc.stderr}")
    os.chmod(tmp_name, 0o755)
    os.replace(tmp_name, target)
    return Built(program, target, proc.stderr)


def compile_all(programs: list[Program], cache_dir: Path, dynamic: bool = False,
                jobs: int | None = None) -> dict[str, Built]:
    """Compile programs in parallel; raises BuildError listing every failure."""
    if shutil.which(CC) is None:
        raise BuildError(f"{CC} not found: the conformance suite compiles its cases at test time")
    workers = jobs or os.cpu_count() or 1
    built: dict[str, Built] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(compile_program, p, cache_dir, dynamic): p for p in programs}
        for future, program in futures.items():
            try:
                built[program.name] = future.result()
            except BuildError as err:
                errors.append(str(err))
    if errors:
        raise BuildError("\n".join(errors))
    return built

