"""An ASGI app served in this process, without a socket, to a synchronous ``httpx.Client``.

``AppLoop`` runs the app's lifespan (``lifespan.startup`` … ``lifespan.shutdown``) on an event loop in a
background thread, as uvicorn would; ``ASGITransport`` hands each request of a plain ``httpx.Client``
to the same ASGI callable on that loop and streams the answer back. Only the socket and the HTTP
parser are left out: the app, its lifespan, its background tasks and its handlers are the real ones.

httpx's own ``ASGITransport`` is async only and reads a whole answer before returning it (a live-tail
stream never ends); Starlette's TestClient is built on another client library (httpx2).
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Iterator
from urllib.parse import unquote

import httpx

Message = dict[str, Any]
App = Callable[..., Any]
_END = object()


class AppLoop:
    """``app``'s lifespan on an event loop in a thread of its own: ``start()`` returns once start-up is
    complete (raising if it failed), ``stop()`` once shutdown is."""

    def __init__(self, app: App, timeout_s: float = 60) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tea-in-process", daemon=True)
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] | None = None
        self._from_app: asyncio.Queue[Message] | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self, coro: Any, timeout_s: float | None = None) -> Any:
        """Run ``coro`` on the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s or self.timeout_s)

    def start(self) -> None:
        self.thread.start()
        try:
            self.run(self._lifespan("startup"))
        except BaseException:
            self._end_loop()
            raise

    def stop(self) -> None:
        try:
            self.run(self._lifespan("shutdown"))
        finally:
            self._end_loop()

    async def _lifespan(self, phase: str) -> None:
        if self._task is None:
            self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
            self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        assert self._to_app is not None and self._from_app is not None
        await self._to_app.put({"type": f"lifespan.{phase}"})
        answer = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # (raises what the app raised)
            raise RuntimeError(f"the app ended its lifespan without answering lifespan.{phase}")
        message = answer.result()
        if message["type"] == f"lifespan.{phase}.failed":
            raise RuntimeError(f"lifespan.{phase} failed: {message.get('message', '')}")

    def _end_loop(self) -> None:
        async def cancel_the_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        if self.thread.is_alive():
            self.run(cancel_the_rest())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(self.timeout_s)
        self.loop.close()


class ASGITransport(httpx.BaseTransport):
    """An ``httpx`` transport that hands each request to ``app`` on ``app_loop``'s event loop. The
    scope is what uvicorn gives for a loopback client; an exception the app lets out is raised here."""

    def __init__(self, app_loop: AppLoop, client: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.app_loop = app_loop
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # a body sent in pieces (chunked) reaches the app in as many messages, as uvicorn hands them on
        body = [request.read()] if isinstance(request.stream, httpx.ByteStream) else [bytes(c) for c in request.stream]
        body = body or [b""]
        url = request.url
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": request.method, "scheme": url.scheme, "root_path": "",
            "path": unquote(url.path), "raw_path": url.raw_path.split(b"?", 1)[0], "query_string": url.query,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "server": (url.host, url.port or 80), "client": self.client, "state": dict(self.app_loop.state),
        }
        timeout_s = (request.extensions.get("timeout") or {}).get("read") or None
        exchange = _Exchange(self.app_loop, scope, body, timeout_s)
        status, headers = exchange.start()
        return httpx.Response(status, headers=headers, stream=exchange, request=request)


class _Exchange(httpx.SyncByteStream):
    """One request: the app runs it on its loop; the answer's start and body chunks come back to the
    calling thread through a queue; closing the answer early is a client disconnect."""

    def __init__(self, app_loop: AppLoop, scope: Message, body: list[bytes], timeout_s: float | None) -> None:
        self.app_loop, self.scope, self.body, self.timeout_s = app_loop, scope, body, timeout_s
        self.out: queue.Queue[Any] = queue.Queue()
        self.disconnected: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        self.app_loop.loop.call_soon_threadsafe(self._spawn)
        first = self._next()
        if first is _END:
            raise RuntimeError("the app returned without answering")
        return first

    def _spawn(self) -> None:
        self.disconnected = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.app_loop.app(self.scope, self._receive, self._send)
        except BaseException as exc:  # (to the caller's thread, raised there; cancelled by a disconnect)
            self.out.put(exc)
        self.out.put(_END)

    async def _receive(self) -> Message:
        if self.body:
            return {"type": "http.request", "body": self.body.pop(0), "more_body": bool(self.body)}
        assert self.disconnected is not None
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        assert self.disconnected is not None
        if self.disconnected.is_set():
            return  # (as a server does once the client has gone)
        if message["type"] == "http.response.start":
            self.out.put((message["status"], list(message.get("headers", []))))
        elif message["type"] == "http.response.body":
            if message.get("body"):
                self.out.put(bytes(message["body"]))
            if not message.get("more_body", False):
                self.disconnected.set()  # (the answer is complete: the connection is done with)

    def _next(self) -> Any:
        try:
            item = self.out.get(timeout=self.timeout_s)
        except queue.Empty:
            raise httpx.ReadTimeout(f"no answer from the app within {self.timeout_s} s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._next()) is not _END:
            yield chunk

    def close(self) -> None:
        """The client is done: a stream still running sees ``http.disconnect``, then is cancelled."""
        async def disconnect() -> None:
            assert self.disconnected is not None and self.task is not None
            self.disconnected.set()
            if not self.task.done():
                done, _ = await asyncio.wait({self.task}, timeout=5)
                if not done:
                    self.task.cancel()
        if self.task is not None and not self.task.done():
            self.app_loop.run(disconnect())
