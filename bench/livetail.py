"""Live-tail clients for the ingestion benchmark (``python -m bench.ingest --live-tail N``): N streams of
``GET /v1/events/stream`` open while the load runs, each read as fast as the socket gives it, to measure
what an open stream costs ingestion. A stream the server drops (too slow, or too many events match) is
opened again at once, as a browser's EventSource would."""
from __future__ import annotations

import socket
import threading
import time

from bench.server import ADMIN_TOKEN, HOST

MAX_RECONNECTS = 1000  # a bound on the loop, not an expected number


class Tailers:
    def __init__(self, port: int, count: int, query: str) -> None:
        self.port = port
        self.query = query
        self.stop_event = threading.Event()
        self.events = 0
        self.dropped = 0
        self.connects = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"tail-{i}", daemon=True) for i in range(count)]

    def start(self) -> "Tailers":
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 10
        while self.connects < len(self.threads) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def stop(self) -> dict:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)
        return {"streams": len(self.threads), "query": self.query, "events_received": self.events,
                "dropped": self.dropped, "connections": self.connects}

    def _run(self) -> None:
        request = (f"GET /v1/events/stream?{self.query} HTTP/1.1\r\nHost: {HOST}\r\n"
                   f"Authorization: Bearer {ADMIN_TOKEN}\r\nAccept: text/event-stream\r\n\r\n").encode()
        for _ in range(MAX_RECONNECTS):
            if self.stop_event.is_set():
                return
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(request)
                with self.lock:
                    self.connects += 1
                self._read(sock)

    def _read(self, sock: socket.socket) -> None:
        pending = b""
        while not self.stop_event.is_set():
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                return
            *messages, pending = (pending + data).split(b"\n\n")
            dropped = sum(1 for m in messages if b"event: dropped" in m)
            with self.lock:
                self.events += sum(1 for m in messages if b"data: " in m) - dropped
                self.dropped += dropped
            if dropped:
                return
