"""A Server-Sent Events reader for the live-tail tests (the text/event-stream format, WHATWG HTML §9.2)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator

import httpx


@dataclass
class Message:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def messages(lines: Iterator[str]) -> Iterator[Message]:
    """Every message (a blank line ends one), comment-only and id-only ones included."""
    current = Message()
    data: list[str] = []
    seen = False
    for line in lines:
        if line == "":
            if seen:
                current.data = "\n".join(data)
                yield current
            current, data, seen = Message(), [], False
            continue
        seen = True
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "retry":
            current.retry = int(value)


class Stream:
    """An open GET /v1/events/stream: ``next_event()`` skips comments and id-only messages."""

    def __init__(self, client: httpx.Client, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self._cm = client.stream("GET", "/v1/events/stream", params=params, headers=headers)
        self.response = self._cm.__enter__()
        self._messages = messages(self.response.iter_lines()) if self.response.status_code == 200 else iter(())
        self.last_id: str | None = None

    def next(self) -> Message:
        message = next(self._messages)
        if message.id is not None:
            self.last_id = message.id
        return message

    def next_event(self) -> Message:
        while True:
            message = self.next()
            if message.data or message.event != "message":
                return message

    def events(self, n: int) -> list[Message]:
        return [self.next_event() for _ in range(n)]

    def rest(self) -> list[Message]:
        """Every message until the response ends."""
        return list(self._messages)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
