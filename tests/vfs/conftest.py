from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from vfsharness import Twin, World


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Twin]:
    t = Twin(tmp_path, "overlay")
    yield t
    t.close()


@pytest.fixture
def ro_twin(tmp_path: Path) -> Iterator[Twin]:
    t = Twin(tmp_path, "image")
    yield t
    t.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()
