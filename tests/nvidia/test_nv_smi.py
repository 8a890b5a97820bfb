"""Debian's nvidia-smi 535, unchanged, in a guest: its ioctls go through the trap and the shim to
a driver stand-in (nvdouble.py) that has no GPU to offer, and it says what it says on such a
driver: "No devices were found". Without the device capability the guest sees no NVIDIA
device and no /proc/driver/nvidia, and nvidia-smi cannot reach a driver.

The client is real: nvidia-smi and libnvidia-ml1 535.261.03 from bookworm's non-free
component (fetched like the driver headers, nvheaders.py), unpacked into an image with
Debian's glibc; only the hardware and kernel module are stood in for.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from caps import parse_policy
from linuxabi.api import Sandbox, SandboxConfig
from linuxabi.images import build_image
from linuxabi.images.progress import Quiet
from nvdouble import (CARD_INFO, CHECK_VERSION_STR, EXPORT_TO_DMABUF_FD, GET_PROBED_IDS, RM_ALLOC, RM_CONTROL,
                      NoGpuDriver)
from nvheaders import debs

SMI = "/usr/lib/nvidia/current/nvidia-smi"  # Debian's path (/usr/bin/nvidia-smi is an alternative)
LIBS = "/usr/lib/x86_64-linux-gnu/nvidia/current"
GPU_POLICY = ('[filesystem]\n"/" = "rx"\n"/tmp" = "rwxcd"\n'
              '[devices]\nallow = ["/dev/null", "/dev/zero", "/dev/tty", "/dev/urandom", "/dev/nvidia*"]\n')


@pytest.fixture(scope="module")
def smi_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = build_image("glibc", ["libc6", "dash"], progress=Quiet()).root
    root = tmp_path_factory.mktemp("nvsmi") / "root"
    shutil.copytree(base, root, symlinks=True)
    for deb in debs(("nvidia-smi", "libnvidia-ml1")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _run(root: Path, driver: NoGpuDriver, policy: str | None, tmp_path: Path,
         capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """nvidia-smi in a sandbox whose NVIDIA driver is ``driver``: (exit status, what it printed)."""
    cfg = SandboxConfig(root=root, env={"LD_LIBRARY_PATH": LIBS}, nvidia=driver.host(),
                        policy=parse_policy(policy) if policy else None, audit=str(tmp_path / "audit.log"),
                        control=False)
    capfd.readouterr()
    rc = Sandbox(cfg).run([SMI])
    out, err = capfd.readouterr()
    return rc, out + err


def test_nvidia_smi_through_the_shim_finds_no_devices(smi_image: Path, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    driver = NoGpuDriver()
    rc, out = _run(smi_image, driver, GPU_POLICY, tmp_path, capfd)
    assert (rc, out.strip()) == (6, "No devices were found")  # nvidia-smi's NVML_ERROR_NOT_FOUND
    escapes = [nr for nr, _ in driver.calls]
    assert escapes[:3] == [CHECK_VERSION_STR, CARD_INFO, RM_ALLOC]  # the handshake came first
    assert (RM_CONTROL, GET_PROBED_IDS) in driver.calls


def test_without_the_device_capability_there_is_no_driver_to_reach(smi_image: Path, tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    driver = NoGpuDriver()
    rc, out = _run(smi_image, driver, None, tmp_path, capfd)  # the default policy: no NVIDIA device
    assert rc == 9 and "couldn't communicate with the NVIDIA driver" in out, out
    assert driver.calls == []


def test_a_dma_buf_the_driver_makes_reaches_the_guest(smi_image: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """NV_ESC_EXPORT_TO_DMABUF_FD: the driver creates an fd in the translator (the stand-in: a
    memfd); the shim installs it in the guest, close-on-exec, in place of the translator's."""
    probe = smi_image / "dmabuf_probe"
    subprocess.run(["gcc", "-O1", "-static", "-o", str(probe), str(Path(__file__).with_name("dmabuf_probe.c"))],
                   check=True)
    driver = NoGpuDriver(gpu_node=True)
    cfg = SandboxConfig(root=smi_image, nvidia=driver.host(), policy=parse_policy(GPU_POLICY),
                        audit=str(tmp_path / "audit.log"), control=False)
    capfd.readouterr()
    rc = Sandbox(cfg).run(["/dmabuf_probe"])
    out = capfd.readouterr().out
    assert rc == 0, out
    assert out == f"size=2600 ioctl=0 status=0 fd_ok=1 cloexec=1 read={driver.dmabuf.decode()}", out
    assert (EXPORT_TO_DMABUF_FD, 0) in driver.calls


def test_a_uvm_command_runs_in_the_guests_own_context(smi_image: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    """UVM acts on the calling process: the shim checks the command, then the platform runs it
    in the calling thread with the other thread stopped (linuxabi/host/in_guest.py). The
    stand-in's /dev/nvidia-uvm is /dev/urandom on the host, which answers an ioctl it does not
    know with EINVAL: the guest gets EINVAL from the kernel, its registers and params as they
    were, and its other thread runs on afterwards."""
    probe = smi_image / "uvm_probe"
    subprocess.run(["gcc", "-O1", "-static", "-pthread", "-o", str(probe),
                    str(Path(__file__).with_name("uvm_probe.c"))], check=True)
    driver = NoGpuDriver(uvm_node=True)
    log = tmp_path / "audit.log"
    cfg = SandboxConfig(root=smi_image, nvidia=driver.host(), policy=parse_policy(GPU_POLICY),
                        audit=str(log), control=False)
    capfd.readouterr()
    box = Sandbox(cfg)
    rc = box.run(["/uvm_probe"])
    out = capfd.readouterr().out
    assert rc == 0, out
    assert out == "ioctl=-22 regs_kept=1 params_kept=1 spinner_runs_after=1\n", out
    assert box.supervisor is not None and box.supervisor.errors == 0
    assert '"event":"deny"' not in log.read_text()
