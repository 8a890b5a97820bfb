"""virtio 1.1 split virtqueues and the virtio-net device model: the only door packets use.

ring.py      split virtqueue layout, driver side and device side over one shared memory
features.py  feature bits, device status bits and the negotiation state machine
net_hdr.py   the 12-byte VERSION_1 struct virtio_net_hdr
offload.py   checksum completion and TSO segmentation a device performs for its driver
device.py    the virtio-net device (rx/tx queues served from a backend)
driver.py    the virtio-net driver the stack uses (buffers in the shared memory)
backends.py  backends: an in-process impaired pair, a pcap writer
impair.py    a netem-like wrapper for any backend (loss, delay, reordering)
"""
