"""Fixtures for the NVIDIA shim tests (the harness itself is in nvharness.py)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from caps.audit import AuditLog
from nvharness import (FD_CTL, FD_CTL2, FD_GPU0, FD_PIPE, FD_UVM, FakeGuest, GuestBuffers, RecordingDriver,
                       header_macros, header_structs)
from nvheaders import build_program, headers_dir
from syscalls.nvidia.abi import Abi, load_abi
from syscalls.nvidia.core import CTL, GPU, UVM, NvDevice
from syscalls.nvidia.shim import NvidiaShim


@pytest.fixture(scope="session")
def abi535() -> Abi:
    return load_abi("535.261.03")


@pytest.fixture(scope="session")
def abi580() -> Abi:
    return load_abi("580.142")


@pytest.fixture(params=["535.261.03", "580.142"], scope="session")
def abi(request: pytest.FixtureRequest) -> Abi:
    return load_abi(request.param)


@pytest.fixture(scope="session")
def nv_headers() -> Path:
    return headers_dir()






@pytest.fixture(scope="session")
def probe(abi535: Abi, nv_headers: Path) -> Path:
    out = Path(tempfile.gettempdir()) / "nv-probe"  # compiled once per header set, reused
    out.mkdir(exist_ok=True)
    return build_program(header_structs(abi535), header_macros(abi535), out, nv_headers)


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "audit.log")
    yield log
    log.close()




@pytest.fixture
def guest() -> Iterator[FakeGuest]:
    driver = RecordingDriver()
    g = FakeGuest(driver)
    for gfd, (kind, minor, path) in {FD_CTL: (CTL, 255, b"/dev/nvidiactl"), FD_GPU0: (GPU, 0, b"/dev/nvidia0"),
                                     FD_UVM: (UVM, 0, b"/dev/nvidia-uvm"),
                                     FD_CTL2: (CTL, 255, b"/dev/nvidiactl")}.items():
        name = f"nv-{path.decode().rsplit('/', 1)[1]}-{gfd}"
        g.fds[gfd] = (NvDevice(kind, minor, path), os.memfd_create(name))
    r, w = os.pipe()
    os.close(w)
    g.fds[FD_PIPE] = (None, r)
    yield g
    for _, fd in g.fds.values():
        os.close(fd)
    for fd in g.installed:
        os.close(fd)


@pytest.fixture
def bufs() -> GuestBuffers:
    return GuestBuffers()


@pytest.fixture
def shim580(abi580: Abi, audit_log: AuditLog) -> NvidiaShim:
    return NvidiaShim(abi580, audit=audit_log, cspace_name="t")


@pytest.fixture
def shim535(abi535: Abi, audit_log: AuditLog) -> NvidiaShim:
    return NvidiaShim(abi535, audit=audit_log, cspace_name="t")
