"""A thin layer over raw ASGI: requests with bounded body reading, responses, a router, OpenAPI.

Frameworks cost 2–4× in requests/s on this path (see bench/README.md); TEA needs only this much.
"""
from tea.http.request import Request
from tea.http.response import Response, json_response, text_response
from tea.http.router import Param, Route, Router

__all__ = ["Param", "Request", "Response", "Route", "Router", "json_response", "text_response"]
