"""Shared fixtures: the default image and scratch copies of it (runners are in oracle.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oracle import GUEST_ENV, REPO, run_native, run_translated, tree_hash  # noqa: F401 - re-exported


@pytest.fixture(scope="session")
def default_image() -> Path:
    from linuxabi.image import default_image

    return default_image()


@pytest.fixture
def image_copy(default_image: Path, tmp_path: Path) -> Path:
    """A private copy of the default image (tests that change or extend the image use it)."""
    dst = tmp_path / "image"
    shutil.copytree(default_image, dst, symlinks=True)
    return dst
