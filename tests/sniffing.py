"""Real loopback traffic as packets: scapy's sniffer on lo, for the pcap importer's tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from scapy.layers.inet import TCP
from scapy.packet import Packet

SO_RCVBUFFORCE = 33  # Linux: a receive buffer above rmem_max, allowed to root


@contextmanager
def sniffing_lo(port: int, *, fins: int) -> Iterator[list[Packet]]:
    """The TCP packets to or from `port` on lo while the block runs, and after it until FINs have been seen in
    `fins` directions (a connection closed both ways counts 2). Skips the test where sniffing is not allowed."""
    from scapy.config import conf
    from scapy.sendrecv import AsyncSniffer

    try:
        listener = conf.L2listen(iface="lo")
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot sniff on lo here: {exc}")
    # Others share this loopback; a deep buffer keeps the sniffer from dropping our packets while it dissects theirs.
    listener.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
    ours: list[Packet] = []

    def keep(packet: Packet) -> None:
        if packet.haslayer(TCP) and port in (packet[TCP].sport, packet[TCP].dport):
            ours.append(packet)

    listening = threading.Event()
    sniffer = AsyncSniffer(opened_socket=listener, store=False, prn=keep, started_callback=listening.set)
    sniffer.start()
    try:
        assert listening.wait(10), "the sniffer did not start"
        yield ours
        deadline = time.monotonic() + 20
        while _fin_directions(ours) < fins and time.monotonic() < deadline:
            time.sleep(0.05)  # the sniffer may lag behind others' loopback traffic: wait for the closes
    finally:
        sniffer.stop()


def _fin_directions(packets: list[Packet]) -> int:
    return len({(p[TCP].sport, p[TCP].dport) for p in list(packets) if p[TCP].flags.F})
