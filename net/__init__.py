"""linuxabi's own TCP/IP stack. Its only door to the world is a virtio-net device (virtio/).

Protocol code is sans-IO: pure state machines fed with frames and a clock (`now`), whose
outputs are frames to send and socket readiness events; the I/O lives at the edges.

checksum.py     internet checksum (big-int arithmetic, no Python loop)
counters.py     per-stack rx/tx/drop counters
ethernet.py     Ethernet II framing, MAC helpers
arp.py          ARP codec and cache (timeouts, pending-resolution queues)
ipv4.py         IPv4 validation/building, fragmentation, hardened reassembly
route.py        routing table (longest prefix, metric, default gateway)
icmp.py         ICMP codec, echo, errors and their quotes
ping.py         ICMP echo sockets (Linux ping-socket semantics)
udp.py          UDP codec, bind table, datagram sockets
tcp_segment.py  TCP segment and options codec
tcp_timing.py   sequence-space comparisons, RFC 6298 RTO estimator
tcp_cc.py       slow start / congestion avoidance / NewReno (SACK-paced) recovery
tcp.py          TCP state machine and sockets (one TcpSocket per endpoint)
tcp_layer.py    TCP demultiplexer, ports, ISNs, stray RSTs, ICMP errors, timers
dhcp_msg.py     DHCP/BOOTP message and option codec
dhcp.py         sans-IO DHCP client state machine (RFC 2131), lease events
dhcp_agent.py   runs a DHCP client on a stack's UDP port 68, applies the lease
stack.py        one interface's stack gluing all of the above (input/poll/take_output)
stats.py        the stack's counters as one dict, and as a text table
nic.py          a stack on a virtio-net driver + device served from a backend (step(now))
testbed.py      deterministic wiring for tests: hosts on virtio over an impaired link
apps.py         small services on stack sockets: TCP/UDP echo, sink, source
tap.py          host I/O: a TAP fd (IFF_VNET_HDR) as a device backend
hostlink.py     the event loop (selector + monotonic clock) owning a Nic on a TAP; CLI
virtio/         split virtqueues, feature negotiation, virtio-net device/driver, backends
compiled.py     loads the per-packet modules compiled by mypyc (mypyc_build.py) while current
"""
from . import compiled

compiled.install()
