"""NVIDIA GPU ioctl shims for /dev/nvidiactl, /dev/nvidiaN and /dev/nvidia-uvm (fail-closed).

Modules, one job each: ``abi`` (tables and driver version), ``codec`` (struct layouts),
``memory`` (guest memory checks, translator buffers, host ioctl), ``classes`` and ``controls``
(allowlists), ``frontend`` (escape decoding, the copy path, frontend escapes), ``rm`` (RM
escapes), ``uvm`` (UVM, run in the guest's context), ``decode`` (rendering for the tracer),
``devices`` (the /dev nodes), ``shim`` (the entry point). See README.md.
"""
from .abi import Abi, UnknownDriverVersion, host_driver_version, load_abi
from .core import CAPS, CTL, GPU, UVM, IoctlContext, NvDevice, Refused
from .shim import NvidiaShim

__all__ = ["Abi", "UnknownDriverVersion", "host_driver_version", "load_abi", "CAPS", "CTL", "GPU", "UVM",
           "IoctlContext", "NvDevice", "Refused", "NvidiaShim"]
