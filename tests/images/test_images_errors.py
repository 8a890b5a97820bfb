"""Failures the user cannot fix from the command line give one line, and leave nothing behind:
no network (a network namespace without one) and a full disk (a tiny tmpfs)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from linuxabi.images.store import cache_dir

REPO = Path(__file__).resolve().parents[2]

BUILD = """
import os, sys
from pathlib import Path
from linuxabi.images import ImageError, Store, build_image
from linuxabi.images.progress import Quiet
images, debs = Path(sys.argv[1]), Path(sys.argv[2])
try:
    build_image("x", ["coreutils"], store=Store(images, debs), progress=Quiet())
except ImageError as e:
    print(type(e).__name__ + ": " + str(e))
print("left:", sorted(p.name for p in images.iterdir() if p.name != "x.lock"))
"""


def run(prefix: list[str], images: Path, debs: Path, env: dict[str, str] | None = None) -> list[str]:
    r = subprocess.run([*prefix, sys.executable, "-c", BUILD, str(images), str(debs)], capture_output=True,
                       text=True, timeout=120, cwd=REPO, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_no_network(tmp_path: Path) -> None:
    conf = tmp_path / "apt.conf"
    conf.write_text('Acquire::Retries "0";\n')  # fail at once instead of after apt's retry delays
    images, debs = tmp_path / "images", tmp_path / "debs"  # an empty .deb cache: all must be fetched
    images.mkdir()
    out = run(["unshare", "--net", "--"], images, debs, {"APT_CONFIG": str(conf)})
    assert out[0].startswith("FetchError: cannot download packages from the Debian mirrors (no network?): ")
    assert "deb.debian.org" in out[0]
    assert out[1] == "left: []"
    assert not [p for p in debs.iterdir()]  # no partial downloads in the cache


def test_disk_full(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    mount = f"mount -t tmpfs -o size=2m tmpfs {images} && exec \"$0\" \"$@\""
    out = run(["unshare", "--mount", "--", "sh", "-c", mount], images, cache_dir() / "debs")
    assert out[0] == f"DiskFull: disk full while building image x in {images}" or \
        out[0].startswith("DiskFull: disk full while unpacking ") and out[0].endswith(f" into {images}")
    assert out[1] == "left: []"
