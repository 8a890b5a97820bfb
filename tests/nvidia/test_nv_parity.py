"""The 535 tables against the driver's real headers (Debian bookworm non-free
nvidia-kernel-source 535.261.03, compiled with gcc): frontend and UVM struct sizes and every
field's offset and size, the escape and UVM command numbers, and the status codes."""
from __future__ import annotations

from pathlib import Path

from nvharness import header_macros, header_structs
from nvheaders import run_layout
from syscalls.nvidia.abi import Abi
from syscalls.nvidia.codec import Layouts


def test_struct_layouts_match_headers(abi535: Abi, probe: Path) -> None:
    real = run_layout(probe)
    structs = header_structs(abi535)
    assert len(structs) >= 75  # every frontend and UVM params struct of the table
    lay = Layouts(abi535.structs)
    bad = []
    for name, leaves in structs.items():
        if real["sizeof"][name] != lay(name).size:
            bad.append(f"sizeof({name}): header {real['sizeof'][name]}, table {lay(name).size}")
        for leaf in leaves:
            off, size = real["offsetof"][name][leaf.path]
            if (off, size) != (leaf.offset, leaf.size):
                bad.append(f"{name}.{leaf.path}: header {off}+{size}, table {leaf.offset}+{leaf.size}")
    assert not bad, "\n".join(bad)


def test_escape_and_uvm_numbers_match_headers(abi535: Abi, probe: Path) -> None:
    macros = run_layout(probe)["macros"]
    fe = abi535.raw["frontend"]
    assert macros["NV_IOCTL_MAGIC"] == fe["ioctl_magic"] and macros["NV_IOCTL_BASE"] == fe["ioctl_base"]
    for name, nr in fe["non_rm_escape_macros"].items():
        assert macros[name] == nr, name
        if name in fe["commands"]:
            assert fe["commands"][name]["nr"] == nr
    uvm = abi535.raw["uvm"]["commands"]
    names = [m for m in header_macros(abi535) if m.startswith("UVM_")]
    assert len(names) >= 60
    for name in names:
        assert macros[name] == uvm[name]["value"], name
    vc = abi535.raw["version_check"]["cmd_values"]
    assert macros["NV_RM_API_VERSION_CMD_QUERY"] == vc["NV_RM_API_VERSION_CMD_QUERY"]
    assert macros["NV_RM_API_VERSION_CMD_RELAXED"] == vc["NV_RM_API_VERSION_CMD_RELAXED"]
    assert macros["NV_DMABUF_EXPORT_MAX_HANDLES"] == fe["dmabuf_constants"]["NV_DMABUF_EXPORT_MAX_HANDLES"]


def test_status_codes_match_headers(abi535: Abi, probe: Path) -> None:
    real = run_layout(probe)["status"]
    assert len(real) > 100
    assert real == {k: v for k, v in abi535.status_by_name.items()}


def test_frontend_sizes_are_what_the_ioctl_numbers_encode(abi: Abi) -> None:
    """Each escape's ioctl_cmd is _IOWR('F', nr, params_size) of its own params struct."""
    lay = Layouts(abi.structs)
    for esc in abi.escapes.values():
        if esc.params_size and esc.params_type in abi.structs:
            assert lay(esc.params_type).size == esc.params_size, esc.name
