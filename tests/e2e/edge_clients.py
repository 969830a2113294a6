"""Clients that misbehave on purpose, over real loopback sockets: raw requests, a slowloris, and the
server process's open descriptors read from /proc."""
from __future__ import annotations

import asyncio
import os
import resource
import socket
import threading
from collections import Counter
from typing import Any, Callable


def raise_nofile(at_least: int) -> None:
    """This process's soft open-file limit to ``at_least`` (bounded by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = at_least if hard == resource.RLIM_INFINITY else min(hard, at_least)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP/1.1 response, None when nothing was answered."""
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response[9:12])


def exchange(port: int, data: bytes, *, timeout_s: float = 15) -> bytes:
    """Send ``data`` (tolerating the server's close), read until the server closes; what it answered
    (b"" for a close without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sender = threading.Thread(target=_send_quietly, args=(sock, data))
        sender.start()
        out = bytearray()
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        sender.join(timeout_s)
        return bytes(out)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server answered and closed before taking everything: expected for refusals
        pass


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slowloris(port: int, connections: int, stop: Any, max_s: float = 120, interval_s: float = 0.3) -> dict[str, int]:
    """``connections`` connections, each sending a request line and then one byte of a header every
    ``interval_s``, never finishing; a connection the server ends is reopened after 50 ms. Runs until
    ``stop`` (a multiprocessing Event) is set, at most ``max_s``; returns counts: connected,
    answered_<status>, closed (no answer), reset, connect_failed, still_open."""
    raise_nofile(connections + 256)
    return asyncio.run(_slowloris(port, connections, stop, max_s, interval_s))


async def _slowloris(port: int, connections: int, stop: Any, max_s: float, interval_s: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    end = loop.time() + max_s
    stats: Counter[str] = Counter()

    def going() -> bool:
        return loop.time() < end and not stop.is_set()

    async def one(n: int) -> None:
        await asyncio.sleep(n * 0.0005)  # ~2 000 connects a second, as a script would
        while going():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                stats["connect_failed"] += 1
                await asyncio.sleep(0.05)
                continue
            stats["connected"] += 1
            stats[await _trickle(reader, writer, n, going, interval_s)] += 1
            writer.close()
            await asyncio.sleep(0.05)

    await asyncio.gather(*(one(n) for n in range(connections)))
    return dict(stats)


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, going: Callable[[], bool],
                   interval_s: float) -> str:
    try:
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-%d: " % n)
        while going():
            try:
                answer = await asyncio.wait_for(reader.read(4096), interval_s)
            except asyncio.TimeoutError:
                writer.write(b"a")
                continue
            status = status_of(answer)
            return f"answered_{status}" if status else "closed"
        return "still_open"
    except (ConnectionError, OSError):
        return "reset"
