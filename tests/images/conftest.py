"""Images built once per session into a private images directory; the .deb cache is the user's
(~/.cache/linuxabi/debs), shared, so that packages are downloaded once per machine."""
from __future__ import annotations

import pytest

from linuxabi.images import BuildResult, Store, build_image
from linuxabi.images.progress import Quiet
from linuxabi.images.store import cache_dir


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("images"), cache_dir() / "debs")


@pytest.fixture(scope="session")
def small(store: Store) -> BuildResult:
    """coreutils, grep and sed (the test modules' SMALL)."""
    return build_image("small", ["coreutils", "grep", "sed"], store=store, progress=Quiet())
