"""(d) A no-op endpoint on TEA's server stack: uvicorn, uvloop, httptools, 1 worker, raw ASGI.

It reads the whole body and answers a tiny JSON 200, so driving it with the single-event load
measures what the HTTP stack alone costs. Run: ``python -m bench.noop --port 38000``.
"""
from __future__ import annotations

import argparse

import uvicorn

BODY = b'{"accepted":1,"rejected":0}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description="no-op ASGI endpoint for the ingestion benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--edge", action="store_true", help="behind TEA's HTTP edge (tea.http.edge), its "
                        "default bounds (bench.edge compares the two)")
    args = parser.parse_args()
    http: object = "httptools"
    if args.edge:
        from tea.http.edge import make_edge
        from tea.settings import load
        http = make_edge(load({}, env={})).protocol()
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http=http, workers=1,  # type: ignore[arg-type]
                lifespan="off", access_log=False, log_level="warning", server_header=False)


if __name__ == "__main__":
    main()
