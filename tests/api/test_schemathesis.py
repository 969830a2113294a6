"""Schemathesis over every operation of /openapi.json, against a live TEA on DuckDB over loopback: in
development mode and with a tenant's API token (authentication on). Every check Schemathesis has —
status codes, content types, response schemas and headers, server errors, valid data accepted and
invalid data refused, methods, authentication, resources after DELETE — over every phase (coverage,
fuzzing, stateful), a bounded number of cases per operation. The document must tell the truth: 0 failures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow
# cases generated per operation and phase; TEA_SCHEMATHESIS_CASES=200 for a longer run (docs/development.md)
CASES_PER_OPERATION = int(os.environ.get("TEA_SCHEMATHESIS_CASES", "8"))
REPO = Path(__file__).resolve().parents[2]
ADMIN = "schemathesis-admin-token-0123456789abcdef"
TENANT = "acme"
OPAQUE_OR_ORDERED = ("cursor", "last_event_id")


def tolerated(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-operation settings, each for a reason OpenAPI cannot state (derived from the document, so a
    route added later is covered the same way):

    * A parameter whose valid values the server issues (``cursor``, ``last_event_id``) or a window whose end
      must follow its start (``start_time``/``end_time``): a value of the declared form can still be a 400
      naming it, so "valid data accepted" also takes 400 there.
    * ``PUT /rest/v1/{relation}`` answers PostgREST's PGRST127 (400) to every request, as documented.
    * telemetry-kit refuses a batch whose events were all ingested already (400, upstream's contract):
      the stateful phase resends what it sent.
    * ``DELETE /v1/tokens/{id}`` revokes: the record stays readable, with ``revoked_at``.
    """
    refusing = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", ())}
            if names.intersection(OPAQUE_OR_ORDERED) or {"start_time", "end_time"} <= names:
                refusing.append((method.upper(), path))
    refusing += [("PUT", "/rest/v1/{relation}"), ("POST", "/v1/ingest/{org_id}/{app_id}")]
    accepts_or_400 = ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]
    out = [{"include-method": m, "include-path": p,
            "checks": {"positive_data_acceptance": {"expected-statuses": accepts_or_400}}}
           for m, p in refusing]
    out.append({"include-path-regex": "^/v1/tokens/", "checks": {"use_after_free": {"enabled": False}}})
    return out


def write_config(path: Path, doc: dict[str, Any], token: str | None = None) -> None:
    """The run's schemathesis.toml: 413 (too many items, too large) and 431 (a header section beyond
    http.max_header_bytes) count as refusing invalid data; the token as the document's bearer scheme, so
    the authentication checks know to leave it out."""
    lines = ["max-stream-events = 1  # (the live tail never ends: one message, a heartbeat at the latest)",
             *([f"[auth.openapi.bearer]\nbearer = {json.dumps(token)}"] if token else []),
             "[checks.negative_data_rejection]",
             'expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, 431]', ""]
    for operation in tolerated(doc):
        lines.append("[[operations]]")
        for key, value in operation.items():
            if key != "checks":
                lines.append(f"{key} = {json.dumps(value)}")
        for check, settings in operation["checks"].items():
            for key, value in settings.items():
                lines.append(f"checks.{check}.{key} = {json.dumps(value)}")
        lines.append("")
    path.write_text("\n".join(lines))


def run_schemathesis(live: LiveServer, tmp_path: Path, token: str | None, tenant: str | None) -> dict[str, Any]:
    doc = httpx.get(live.url + "/openapi.json").json()
    config = tmp_path / "schemathesis.toml"
    write_config(config, doc, token)
    report = tmp_path / "report"
    # (one worker: two threads in Schemathesis's coverage phase can meet CPython 3.11's "AST constructor
    # recursion depth mismatch" in Hypothesis's lambda descriptions, a runtime error that is not TEA's)
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run",
               live.url + "/openapi.json", "--checks", "all", "--max-examples", str(CASES_PER_OPERATION),
               "--seed", "1", "--workers", "1", "--continue-on-failure", "--no-color", "--request-timeout", "5",
               "--report", "json", "--report-dir", str(report)]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks", "PYTHONPATH": str(REPO)}
    if tenant:
        env["TEA_SCHEMATHESIS_TENANT"] = tenant
    # (run in tmp_path: Schemathesis keeps its cache of failures in ./.schemathesis)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    [found] = list(report.glob("json-*.json"))
    result = json.loads(found.read_text())
    result["output"] = failures_of(done.stdout)
    return result


def failures_of(output: str, width: int = 400) -> str:
    """Schemathesis's FAILURES section (each failure, its response and its curl line) and its summary,
    long lines cut to ``width`` characters (a generated value can be megabytes long)."""
    start = output.find("= FAILURES =")
    kept = output[start if start >= 0 else 0:]
    return "\n".join(line if len(line) <= width else line[:width] + " …" for line in kept.splitlines())


def check(result: dict[str, Any], operations: int) -> None:
    assert result["operations"]["tested"] == operations and result["operations"]["errored"] == 0
    assert result["test_cases"]["generated"] >= operations * CASES_PER_OPERATION // 2
    assert result["failures"] == [] and result["errors"] == [], result["output"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["development", "tenant"])
def test_every_operation_answers_as_documented(serve: Callable[..., LiveServer], tmp_path: Path, mode: str) -> None:
    # (events stamped up to year 9998 are the documented form; the server's clock-skew refusal is per event)
    live = serve(storage_backend="duckdb", max_future_skew_s=0, auth_validation=mode == "tenant", admin_token=ADMIN,
                 stream__heartbeat_s=0.2)
    token = None
    if mode == "tenant":
        token = httpx.post(live.url + "/v1/tokens", headers={"authorization": f"Bearer {ADMIN}"},
                           json={"tenant_id": TENANT, "tier": "enterprise"}).json()["token"]
    doc = httpx.get(live.url + "/openapi.json").json()
    operations = sum(len(methods) for methods in doc["paths"].values())
    result = run_schemathesis(live, tmp_path, token, TENANT if mode == "tenant" else None)
    check(result, operations)
