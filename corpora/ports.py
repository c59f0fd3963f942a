"""A free TCP port, for the few listeners that cannot bind port 0 themselves and say which port they got."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on at this moment. Another process may take it before the intended listener binds
    it, so a listener that can bind port 0 and report its address should (the recorder, the tap's single
    listener, the demo services); this is for those that cannot: several mitmproxy listeners in one process,
    a locust master whose workers must be told the port before it starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
