"""The UDP socket an SNMP engine listens on, bound before pysnmp sees it: pysnmp would bind
later, inside the loop, and only log a port in use. The probe's agent and the collector's
receiver both start with it."""

from __future__ import annotations

import socket

# Room for bursts (a walk's retries, a flood) while the loop is busy; the kernel caps it at
# net.core.rmem_max.
RECEIVE_BUFFER = 1 << 20


def bind_socket(host: str, port: int, what: str) -> socket.socket:
    """Binds now, so that a port in use stops the start with a clear error naming `what`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(exc.errno, f"{what} cannot listen on {shown}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock
