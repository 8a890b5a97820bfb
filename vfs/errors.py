"""Errors as Linux reports them: ``OSError(errno, strerror)``, nothing else for a guest's input."""
from __future__ import annotations

import errno as _errno
import os
from typing import NoReturn


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def fail(code: int) -> NoReturn:
    raise OSError(code, os.strerror(code))


# Re-exported so modules say ``E.ENOENT`` without importing errno everywhere.
E = _errno
