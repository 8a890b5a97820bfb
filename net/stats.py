"""Counters as one plain dict (`stack_stats`), and that dict as a small text table
(`render`) for `linuxabi net stats` and the host link's CLI. Drop reasons stay fine-grained
in the dict; `classify` folds them into a few classes a person scans first."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .ethernet import format_mac
from .ipv4 import ntoa

if TYPE_CHECKING:
    from .stack import Stack

DROP_CLASSES = ("malformed", "checksum", "no_listener", "not_for_us", "policy", "resources", "other")

_CHECKSUM = ("_bad_checksum",)
_MALFORMED = ("_truncated", "_bad_length", "_bad_ihl", "_bad_version", "_bad_offset", "_bad_options",
              "_bad_port", "_bad_op", "_bad_quote", "_bad_offload", "frag_overlap", "frag_bad_length",
              "frag_empty", "frag_duplicate", "dhcp_")
_NO_LISTENER = ("_no_socket", "tcp_listen_", "_unsupported", "_unknown_type", "_unknown_protocol",
                "eth_ipv6", "eth_vlan")
_NOT_FOR_US = ("_not_for_us", "_own_frame", "_quote_not_ours", "_not_unicast", "_broadcast_echo")
_POLICY = ("martian", "bogus", "conflict", "_paws", "_out_of_window", "_beyond_window", "_ack_", "_no_ack",
           "_no_syn", "_rst_", "_syn_in_window", "_bad_ack", "_bad_source")
_RESOURCES = ("_full", "_overflow", "_too_many", "_too_big")


def classify(reason: str) -> str:
    for cls, marks in (("checksum", _CHECKSUM), ("malformed", _MALFORMED), ("not_for_us", _NOT_FOR_US),
                       ("no_listener", _NO_LISTENER), ("resources", _RESOURCES), ("policy", _POLICY)):
        if any(m in reason for m in marks):
            return cls
    return "other"


def stack_stats(stack: Stack) -> dict[str, Any]:
    c = stack.counters
    ev = c.events
    classes = dict.fromkeys(DROP_CLASSES, 0)
    for reason, n in c.drops.items():
        classes[classify(reason)] += n
    gw = next((r.gateway for r in stack.routes if r.prefix_len == 0), 0)
    conns = []
    for s in list(stack.tcp.conns.values()):
        info = s.info()
        conns.append({"local": f"{ntoa(s.local[0])}:{s.local[1]}" if s.local else "-",
                      "remote": f"{ntoa(s.remote[0])}:{s.remote[1]}" if s.remote else "-", **info})
    listeners = [f"{ntoa(a)}:{p}" for a, p in stack.tcp.listeners]
    dhcp = None
    if stack.dhcp is not None:
        lease = stack.dhcp.client.lease
        dhcp = {"state": stack.dhcp.state.value, "lease": lease.describe() if lease else None,
                "expires": lease.expires if lease else None, **dict(stack.dhcp.client.stats)}
    return {
        "interface": {"name": stack.name, "mac": format_mac(stack.mac), "mtu": stack.mtu,
                      "address": f"{ntoa(stack.addr)}/{stack.prefix_len}" if stack.addr else None,
                      "gateway": ntoa(gw) if gw else None, "dns": [ntoa(d) for d in stack.dns]},
        "packets": {"rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "rx_accepted": c.rx_accepted,
                    "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes},
        "drops": dict(c.drops),
        "drop_classes": classes,
        "tx_drops": dict(c.tx_drops),
        "tcp": {"retransmits": ev["tcp_retransmits"], "timeouts": ev["tcp_timeouts"],
                "fast_retransmits": ev["tcp_fast_retransmits"], "sack_retransmits": ev["tcp_sack_retransmits"],
                "syn_retransmits": ev["tcp_syn_retransmits"], "active_opens": ev["tcp_active_opens"],
                "passive_opens": ev["tcp_passive_opens"], "resets_sent": ev["tcp_resets_sent"],
                "resets_received": ev["tcp_resets_received"], "listeners": listeners, "connections": conns},
        "dhcp": dhcp,
        "events": dict(ev),
    }


def _table(rows: Sequence[Sequence[str]], title: str) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [title]
    for r in rows:
        out.append("  " + "  ".join(cell.rjust(w) if cell[:1].isdigit() else cell.ljust(w)
                                    for cell, w in zip(r, widths)).rstrip())
    return out


def render(stats: dict[str, Any]) -> str:
    """A few small tables: interface, traffic, drops (by class, then by reason), TCP."""
    lines: list[str] = []
    iface = stats.get("interface", {})
    addr = iface.get("address") or "unconfigured"
    lines.append(f"{iface.get('name') or 'interface'}  {iface.get('mac', '')}  {addr}"
                 f"  gw {iface.get('gateway') or '-'}  mtu {iface.get('mtu', '')}")
    dhcp = stats.get("dhcp")
    if dhcp:
        lines.append(f"dhcp {dhcp['state']}: {dhcp.get('lease') or 'no lease'}")
    p = stats.get("packets", {})
    lines += _table([("", "packets", "bytes"),
                     ("in", str(p.get("rx_packets", 0)), str(p.get("rx_bytes", 0))),
                     ("out", str(p.get("tx_packets", 0)), str(p.get("tx_bytes", 0)))], "traffic")
    classes = [(k, str(v)) for k, v in stats.get("drop_classes", {}).items() if v]
    lines += _table(classes, "drops by class")
    reasons = sorted(stats.get("drops", {}).items(), key=lambda kv: -kv[1])
    lines += _table([(k, str(v)) for k, v in reasons], "drops by reason")
    lines += _table([(k, str(v)) for k, v in sorted(stats.get("tx_drops", {}).items())], "outgoing drops")
    tcp = stats.get("tcp", {})
    if tcp:
        lines.append(f"tcp  retransmits {tcp['retransmits']} (timeouts {tcp['timeouts']}, fast "
                     f"{tcp['fast_retransmits']}, sack {tcp['sack_retransmits']})  opens "
                     f"{tcp['active_opens']} active / {tcp['passive_opens']} passive  listening "
                     f"{' '.join(tcp['listeners']) or '-'}")
        rows = [("local", "remote", "state", "cwnd", "srtt", "sndq", "rcvq")]
        for c in tcp.get("connections", []):
            srtt = c.get("srtt")
            rows.append((c["local"], c["remote"], str(c["state"]), str(c["cwnd"]),
                         f"{srtt * 1000:.1f}ms" if srtt else "-", str(c["sndq"]), str(c["rcvq"])))
        if len(rows) > 1:
            lines += _table(rows, "connections")
    for part in ("device", "driver", "backend"):
        d = stats.get(part)
        if d:
            lines += _table([(k, str(v)) for k, v in sorted(d.items())], part)
    return "\n".join(lines)
