"""Feature bits, device status bits, and the negotiation as a small state machine.

The device side is `DeviceStatus` (what the device accepts); the driver side is `negotiate`,
which walks the initialisation sequence of virtio 1.1, 3.1.1 against any object with the
`Transport` methods.
"""
from __future__ import annotations

from typing import Final, Protocol

# device status (virtio 1.1, 2.1)
ACKNOWLEDGE: Final = 1
DRIVER: Final = 2
DRIVER_OK: Final = 4
FEATURES_OK: Final = 8
DEVICE_NEEDS_RESET: Final = 64
FAILED: Final = 128

# virtio-net feature bits (5.1.3)
VIRTIO_NET_F_CSUM: Final = 1 << 0
VIRTIO_NET_F_GUEST_CSUM: Final = 1 << 1
VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: Final = 1 << 2
VIRTIO_NET_F_MTU: Final = 1 << 3
VIRTIO_NET_F_MAC: Final = 1 << 5
VIRTIO_NET_F_GUEST_TSO4: Final = 1 << 7
VIRTIO_NET_F_GUEST_TSO6: Final = 1 << 8
VIRTIO_NET_F_GUEST_ECN: Final = 1 << 9
VIRTIO_NET_F_GUEST_UFO: Final = 1 << 10
VIRTIO_NET_F_HOST_TSO4: Final = 1 << 11
VIRTIO_NET_F_HOST_TSO6: Final = 1 << 12
VIRTIO_NET_F_HOST_ECN: Final = 1 << 13
VIRTIO_NET_F_HOST_UFO: Final = 1 << 14
VIRTIO_NET_F_MRG_RXBUF: Final = 1 << 15
VIRTIO_NET_F_STATUS: Final = 1 << 16
VIRTIO_NET_F_CTRL_VQ: Final = 1 << 17
# reserved feature bits (6)
VIRTIO_F_INDIRECT_DESC: Final = 1 << 28
VIRTIO_F_EVENT_IDX: Final = 1 << 29
VIRTIO_F_VERSION_1: Final = 1 << 32
VIRTIO_F_ACCESS_PLATFORM: Final = 1 << 33
VIRTIO_F_RING_PACKED: Final = 1 << 34

NAMES: Final = {v: k for k, v in globals().items() if k.startswith(("VIRTIO_NET_F_", "VIRTIO_F_"))}

# "feature A requires feature B" (5.1.3.1): a driver must not accept A without B.
REQUIRES: dict[int, int] = {
    VIRTIO_NET_F_GUEST_TSO4: VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_TSO6: VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_UFO: VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_ECN: VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4: VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_HOST_TSO6: VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_HOST_UFO: VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_HOST_ECN: VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6,
}


def names(features: int) -> list[str]:
    return [n for bit, n in sorted(NAMES.items()) if features & bit]


def consistent(features: int) -> bool:
    """Every accepted feature has (one of) the features it depends on."""
    return all(not features & f or features & need for f, need in REQUIRES.items())


def drop_unsupported(features: int) -> int:
    """Remove features whose dependencies are missing, until the set is consistent."""
    while not consistent(features):
        for f, need in REQUIRES.items():
            if features & f and not features & need:
                features &= ~f
    return features


class NegotiationError(Exception):
    pass


class DeviceStatus:
    """The device's status register and feature words, with the transitions it allows."""

    def __init__(self, offered: int, *, required: int = VIRTIO_F_VERSION_1) -> None:
        self.offered, self.required = offered, required
        self.status = 0
        self.driver_features = 0
        self.rejected_writes = 0

    def reset(self) -> None:
        self.status, self.driver_features = 0, 0

    @property
    def negotiated(self) -> int:
        """Features in force: only meaningful once FEATURES_OK has stuck."""
        return self.driver_features if self.status & FEATURES_OK else 0

    @property
    def live(self) -> bool:
        return self.status & (DRIVER_OK | FAILED | DEVICE_NEEDS_RESET) == DRIVER_OK

    def write_driver_features(self, features: int) -> None:
        # only between DRIVER and FEATURES_OK (3.1.1 steps 4-5)
        if self.status & (DRIVER | FEATURES_OK) != DRIVER:
            self.rejected_writes += 1
            return
        self.driver_features = features

    def write_status(self, value: int) -> None:
        if value == 0:
            self.reset()
            return
        old = self.status
        if value & old != old:           # the driver must never clear a bit except by reset
            self.rejected_writes += 1
            return
        new = value & ~old
        # each step needs the one before it: ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK
        for bit, before in ((DRIVER, ACKNOWLEDGE), (FEATURES_OK, DRIVER), (DRIVER_OK, FEATURES_OK)):
            if new & bit and not value & before:
                self.rejected_writes += 1
                return
        if new & FEATURES_OK and not self._acceptable(self.driver_features):
            value &= ~(FEATURES_OK | DRIVER_OK)   # the driver reads it back and gives up
        self.status = value | (old & DEVICE_NEEDS_RESET)

    def _acceptable(self, features: int) -> bool:
        return (features & ~self.offered == 0 and features & self.required == self.required
                and consistent(features))

    def needs_reset(self) -> None:
        self.status |= DEVICE_NEEDS_RESET


class Transport(Protocol):
    """The device registers a driver reaches (virtio-pci common config, reduced)."""
    def get_status(self) -> int: ...
    def set_status(self, value: int) -> None: ...
    def get_device_features(self) -> int: ...
    def set_driver_features(self, features: int) -> None: ...


def negotiate(dev: Transport, wanted: int) -> int:
    """virtio 1.1, 3.1.1 steps 1-6: returns the accepted features, status left at FEATURES_OK."""
    dev.set_status(0)
    dev.set_status(ACKNOWLEDGE)
    dev.set_status(ACKNOWLEDGE | DRIVER)
    offered = dev.get_device_features()
    if not offered & VIRTIO_F_VERSION_1:
        dev.set_status(dev.get_status() | FAILED)
        raise NegotiationError("device does not offer VIRTIO_F_VERSION_1 (legacy only)")
    features = drop_unsupported(offered & (wanted | VIRTIO_F_VERSION_1))
    dev.set_driver_features(features)
    dev.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK)
    if not dev.get_status() & FEATURES_OK:
        dev.set_status(dev.get_status() | FAILED)
        raise NegotiationError(f"device refused features {names(features)}")
    return features
