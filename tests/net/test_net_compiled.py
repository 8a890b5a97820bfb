"""The stack's mypyc-compiled modules (net/mypyc_build.py, built by `make setup`) are what runs,
and only while every source is the one they were compiled from (net/compiled.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from net import mypyc_build
from net.compiled import SUFFIX

# Run in a fresh interpreter with the finder held back (LINUXABI_PURE), then installed from
# the manifest named in argv[1]: prints whether it took, and where two modules came from.
PROBE = """
import os, sys
import net.compiled as c
del os.environ["LINUXABI_PURE"]
print(c.install(sys.argv[1]))
import net.tcp, net.stack
print(net.tcp.__file__)
print(net.stack.__file__)
"""


def _probe(manifest: Path) -> list[str]:
    env = dict(os.environ, LINUXABI_PURE="1")
    r = subprocess.run([sys.executable, "-c", PROBE, str(manifest)], capture_output=True, text=True,
                       env=env, cwd=mypyc_build.ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def _copy(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "lib").symlink_to(mypyc_build.OUT / "lib")
    (tmp_path / "manifest.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "manifest.txt"


def test_the_built_modules_are_current_and_in_use() -> None:
    assert mypyc_build.current(), "`make setup` (python -m net.mypyc_build) did not compile the stack"
    r = subprocess.run([sys.executable, "-c", "import net.tcp, net.bridge, net.compiled as c; "
                        "print(c.active(), net.tcp.__file__, net.bridge.__file__)"],
                       capture_output=True, text=True, cwd=mypyc_build.ROOT, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "LINUXABI_PURE"})
    active, tcp, bridge = r.stdout.split()
    assert active == "True" and tcp.endswith(SUFFIX) and bridge.endswith(SUFFIX), r.stdout + r.stderr


def test_a_current_manifest_loads_the_compiled_forms(tmp_path: Path) -> None:
    out = _probe(_copy(tmp_path, mypyc_build.MANIFEST.read_text().splitlines()))
    assert out[0] == "True" and all(p.endswith(SUFFIX) for p in out[1:]), out


def test_one_edited_source_puts_every_module_back_on_its_source(tmp_path: Path) -> None:
    lines = mypyc_build.MANIFEST.read_text().splitlines()
    edited = [f"source net/tcp_cc.py {'0' * 64}" if line.startswith("source net/tcp_cc.py ") else line
              for line in lines]
    assert edited != lines
    out = _probe(_copy(tmp_path, edited))
    assert out == ["False", str(mypyc_build.ROOT / "net" / "tcp.py"), str(mypyc_build.ROOT / "net" / "stack.py")]


def test_a_missing_extension_puts_every_module_back_on_its_source(tmp_path: Path) -> None:
    lines = [line.replace("lib/net/bridge", "lib/net/nowhere") for line in mypyc_build.MANIFEST.read_text().splitlines()]
    out = _probe(_copy(tmp_path, lines))
    assert out[0] == "False" and all(p.endswith(".py") for p in out[1:]), out
