"""Real answers against /openapi.json: a response's status, body and headers as the document says."""
from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator


def documented(doc: dict[str, Any], path: str, method: str, status: int, media: str = "application/json") -> Any:
    """A validator of the body the document gives ``method path`` for ``status``."""
    schema = doc["paths"][path][method]["responses"][str(status)]["content"][media]["schema"]
    return Draft202012Validator({**schema, "components": doc["components"]})


def assert_documented(doc: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """``response`` (to ``method path``) has a documented status, its body the documented schema, and its
    TEA-Consistency and Retry-After headers are documented there."""
    documented_response = doc["paths"][path][method]["responses"][str(response.status_code)]
    errors = [e.message for e in documented(doc, path, method, response.status_code).iter_errors(response.json())]
    assert not errors, (path, response.status_code, errors[:3], response.text[:300])
    headers = documented_response.get("headers", {})
    for name, spec in headers.items():
        if spec.get("required"):
            assert name.lower() in response.headers, (path, name)
    for name in ("tea-consistency", "retry-after"):
        if name in response.headers:
            spec = {k.lower(): v for k, v in headers.items()}.get(name)
            assert spec is not None, (path, response.status_code, name, "not documented")
            assert "enum" not in spec["schema"] or response.headers[name] in spec["schema"]["enum"]
