"""The HTTP listening sockets of ``tea serve``, bound before anything starts.

Binding first means a port already in use stops ``tea serve`` with one line naming the port and the
setting, and a nonzero exit code — before the data directory is locked or storage opened — rather
than a traceback after "Uvicorn running". The sockets are handed to uvicorn as they are.
"""
from __future__ import annotations

import errno
import socket

from tea.errors import ConfigError


def bind(host: str, port: int, setting: str) -> socket.socket:
    """A TCP socket bound to ``host:port``; ConfigError naming ``setting`` when it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({setting}): {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    # as uvicorn binds: a restart may reuse a port whose old connections linger in TIME_WAIT (never a port
    # another process listens on: that stays an error without SO_REUSEPORT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use ({setting}): stop what listens there "
                              "or choose another port") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({setting}): {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
