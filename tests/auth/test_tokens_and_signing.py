"""API tokens (admin API, CLI, storage at rest) and telemetry-kit HMAC signing, checked against openssl."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import httpx
import pytest

from tea.auth.keys import SecretBox, load_master_key, token_hash
from tests.auth.conftest import ADMIN_TOKEN, admin_headers, bearer, create_token

ORG = "550e8400-e29b-41d4-a716-446655440000"
APP = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def openssl_signature(secret: str, message: bytes) -> str:
    """An independent HMAC-SHA256: openssl, as telemetry-kit's DEPLOYMENT_GUIDE does it."""
    proc = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", secret, "-hex"], input=message,
                          capture_output=True, check=True)
    return proc.stdout.decode().split("= ")[-1].strip()


def signed_headers(token: str, secret: str, body: bytes, *, ts: str | None = None, nonce: str | None = None,
                   signature: str | None = None, drop: tuple[str, ...] = (), extra: dict | None = None) -> dict:
    ts = ts if ts is not None else str(int(time.time()))
    nonce = nonce if nonce is not None else str(uuid.uuid4())
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "x-timestamp": ts,
               "x-nonce": nonce, "x-signature": signature or openssl_signature(secret, f"{ts}:{nonce}:".encode() + body),
               **(extra or {})}
    for name in drop:
        headers.pop(name)
    return headers


def signed_post(url: str, token: str, secret: str, body: bytes, *, send: bytes | None = None,
                **options) -> httpx.Response:  # type: ignore[no-untyped-def]
    """POST /v1/events signed over ``body``; ``send`` sends other bytes than were signed."""
    return httpx.post(url + "/v1/events", content=body if send is None else send,
                      headers=signed_headers(token, secret, body, **options))


def signed_get(url: str, path: str, token: str, secret: str, **options) -> httpx.Response:  # type: ignore[no-untyped-def]
    """A signed GET: the signature covers the empty body."""
    return httpx.get(url + path, headers=signed_headers(token, secret, b"", **options))


def test_fresh_server_refuses_unauthenticated_writes(secure) -> None:
    live = secure(storage_backend="memory")
    r = httpx.post(live.url + "/v1/events", json={"event_type": "x"})
    assert r.status_code == 401 and r.json()["error"] == "missing_credentials"
    assert httpx.get(live.url + "/v1/events").status_code == 401
    assert httpx.get(live.url + "/health").json()["auth"] == "enabled"
    assert httpx.get(live.url + "/healthz").status_code == 200  # operations stay public


def test_token_lifecycle_over_http(secure) -> None:
    live = secure(storage_backend="duckdb")
    issued = create_token(live.url, "acme", "pro", org_id=ORG, app_id=APP)
    assert set(issued) == {"token", "secret", "token_id", "tenant_id", "tier", "scopes", "org_id", "app_id"}
    assert issued["token"].startswith("tk_" + ORG.replace("-", "") + "_") and len(issued["token"]) == 3 + 32 + 1 + 32
    assert issued["scopes"] == ["events:write", "events:read"] and issued["tier"] == "pro"
    token = issued["token"]
    assert httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers=bearer(token)).status_code == 200
    listed = httpx.get(live.url + "/v1/tokens", headers=admin_headers()).json()["tokens"]
    assert [t["token_id"] for t in listed] == [issued["token_id"]]
    assert "secret" not in listed[0] and "token" not in listed[0] and listed[0]["token_prefix"] == token[:12]
    rotated = httpx.post(f"{live.url}/v1/tokens/{issued['token_id']}/rotate", headers=admin_headers()).json()
    assert rotated["token_id"] == issued["token_id"] and rotated["token"] != token and rotated["secret"] != issued["secret"]
    assert httpx.get(live.url + "/v1/events", headers=bearer(token)).status_code == 401
    assert httpx.get(live.url + "/v1/events", headers=bearer(rotated["token"])).status_code == 200
    assert httpx.delete(f"{live.url}/v1/tokens/{issued['token_id']}", headers=admin_headers()).json()["revoked_at"]
    r = httpx.get(live.url + "/v1/events", headers=bearer(rotated["token"]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    # only admins manage tokens
    other = create_token(live.url, "beta")
    assert httpx.get(live.url + "/v1/tokens", headers=bearer(other["token"])).status_code == 403
    bad = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "x", "tier": "platinum"}, headers=admin_headers())
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "tier"


def test_tokens_at_rest_are_hashed_and_sealed(secure, tmp_path: Path) -> None:
    live = secure(storage_backend="duckdb")
    issued = create_token(live.url, "acme")
    live.stop()
    db = duckdb.connect(str(tmp_path / "data" / "tea.duckdb"), read_only=True)
    dump = json.dumps(db.execute("SELECT * FROM api_tokens").fetchall(), default=repr)
    assert issued["token"] not in dump and issued["secret"] not in dump
    row = db.execute("SELECT token_hash, secret_sealed, token_id FROM api_tokens").fetchone()
    db.close()
    assert row[0] == token_hash(issued["token"])
    box = SecretBox(load_master_key(None, str(tmp_path / "data")))
    assert box.open(bytes(row[1]), row[2]) == issued["secret"]
    assert oct((tmp_path / "data" / "secret.key").stat().st_mode & 0o777) == "0o600"


def test_signed_requests(secure) -> None:
    live = secure(storage_backend="memory")
    issued = create_token(live.url, "acme")
    token, secret = issued["token"], issued["secret"]
    body = json.dumps([{"event_type": "signed", "event_id": "s1"}]).encode()
    assert signed_post(live.url, token, secret, body).status_code == 200
    # each failure in telemetry-kit's order and with its status
    r = signed_post(live.url, token, secret, body, drop=("x-nonce",))
    assert r.status_code == 401 and r.json()["message"] == "Missing X-Nonce header"
    r = signed_post(live.url, token, secret, body, signature="0" * 64)
    assert r.status_code == 401 and r.json()["message"] == "Invalid HMAC signature"
    good = openssl_signature(secret, b"1700000000:n-upper:" + body)
    assert signed_post(live.url, token, secret, body, ts="1700000000", nonce="n-upper",
                       signature=good.upper()).status_code == 401  # uppercase hex fails, as upstream
    ts = "soon"
    r = signed_post(live.url, token, secret, body, ts=ts)
    assert r.status_code == 400 and r.json()["error"] == "invalid_timestamp"
    r = signed_post(live.url, token, secret, body, ts=str(int(time.time()) - 601))
    assert r.status_code == 403 and r.json()["message"] == "Timestamp outside acceptable window"
    nonce = str(uuid.uuid4())
    assert signed_post(live.url, token, secret, body, nonce=nonce).status_code == 200
    r = signed_post(live.url, token, secret, body, nonce=nonce)
    assert r.status_code == 409 and r.json()["message"] == "Duplicate nonce detected"
    other = json.dumps([{"event_type": "signed", "event_id": "s2"}]).encode()
    tampered = signed_post(live.url, token, secret, body, send=other)  # sign one body, send another
    assert tampered.status_code == 401 and tampered.json()["message"] == "Invalid HMAC signature"
    assert signed_post(live.url, token, secret, body, send=body + b" ").status_code == 401  # one byte more
    assert signed_post(live.url, token, secret, other).status_code == 200  # the same body, signed: accepted
    # a valid two-part signature ("{ts}:{body}") is refused while auth.two_part_signatures is off
    ts = str(int(time.time()))
    r = httpx.post(live.url + "/v1/events", content=body, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json", "x-timestamp": ts,
        "x-signature": openssl_signature(secret, f"{ts}:".encode() + body)})
    assert r.status_code == 401 and r.json()["message"] == "Missing X-Nonce header"


def test_signatures_are_verified_on_reads_too(secure) -> None:
    live = secure(storage_backend="memory", auth__require_signature=True)
    issued = create_token(live.url, "acme")
    token, secret = issued["token"], issued["secret"]
    r = httpx.get(live.url + "/v1/events", headers=bearer(token))  # required: an unsigned read is refused
    assert r.status_code == 401 and r.json()["message"] == "Missing X-Signature header"
    junk = {"authorization": f"Bearer {token}", "x-signature": "junk", "x-timestamp": "0", "x-nonce": "n"}
    assert httpx.get(live.url + "/v1/events", headers=junk).status_code == 401
    assert httpx.get(live.url + "/v1/events", headers=junk).status_code == 401  # not a 200, not even a 409
    nonce = str(uuid.uuid4())
    ok = signed_get(live.url, "/v1/events", token, secret, nonce=nonce)
    assert ok.status_code == 200, ok.text
    r = signed_get(live.url, "/v1/events", token, secret, nonce=nonce)
    assert r.status_code == 409 and r.json()["message"] == "Duplicate nonce detected"
    r = signed_get(live.url, "/v1/stats", token, secret, ts=str(int(time.time()) - 601))
    assert r.status_code == 403 and r.json()["error"] == "timestamp_out_of_window"
    assert signed_get(live.url, "/v1/stats", token, secret).status_code == 200
    # the signature covers a GET's (empty) body: one signed over other bytes fails
    r = httpx.get(live.url + "/v1/stats", headers=signed_headers(token, secret, b"[]"))
    assert r.status_code == 401 and r.json()["message"] == "Invalid HMAC signature"


def test_a_sent_signature_is_verified_on_reads_when_not_required(secure) -> None:
    live = secure(storage_backend="memory")
    issued = create_token(live.url, "acme")
    token, secret = issued["token"], issued["secret"]
    assert httpx.get(live.url + "/v1/events", headers=bearer(token)).status_code == 200  # unsigned: fine
    r = httpx.get(live.url + "/v1/events", headers={**bearer(token), "x-signature": "0" * 64,
                                                     "x-timestamp": str(int(time.time())), "x-nonce": "n1"})
    assert r.status_code == 401 and r.json()["message"] == "Invalid HMAC signature"
    assert signed_get(live.url, "/v1/events", token, secret).status_code == 200


def test_a_failed_signature_does_not_use_up_the_rate_limit(secure) -> None:
    live = secure(storage_backend="memory", tier__free__requests_per_minute=2)
    issued = create_token(live.url, "acme", "free")
    token, secret = issued["token"], issued["secret"]
    body = b'[{"event_type":"limited"}]'
    for _ in range(5):  # someone holding only the token value, without the secret
        assert signed_post(live.url, token, secret, body, signature="0" * 64).status_code == 401
        assert signed_get(live.url, "/v1/events", token, secret, signature="1" * 64).status_code == 401
    assert signed_post(live.url, token, secret, body).status_code == 200
    assert signed_get(live.url, "/v1/events", token, secret).status_code == 200
    r = signed_post(live.url, token, secret, body)
    assert r.status_code == 429 and r.headers["x-ratelimit-remaining"] == "0"


def test_signatures_can_be_required_and_two_part_form_allowed(secure) -> None:
    live = secure(storage_backend="memory", auth__require_signature=True, auth__two_part_signatures=True)
    issued = create_token(live.url, "acme")
    token, secret = issued["token"], issued["secret"]
    assert httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers=bearer(token)).status_code == 401
    body = b'{"event_type":"two-part"}'
    ts = str(int(time.time()))
    r = httpx.post(live.url + "/v1/events", content=body, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json", "x-timestamp": ts,
        "x-signature": openssl_signature(secret, f"{ts}:".encode() + body)})
    assert r.status_code == 200, r.text


def test_cli_token_commands_on_the_data_dir_and_through_a_server(secure, tmp_path: Path) -> None:
    data = tmp_path / "cli-data"
    cli = [sys.executable, "-m", "tea", "token"]
    made = subprocess.run(cli + ["create", "--data-dir", str(data), "--tenant", "acme", "--tier", "business",
                                 "--org", ORG, "--app", APP, "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    issued = json.loads(made.stdout)
    assert issued["tenant_id"] == "acme" and issued["tier"] == "business" and issued["token"].startswith("tk_")
    listed = subprocess.run(cli + ["list", "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert issued["token_id"] in listed.stdout and issued["token"] not in listed.stdout
    live = secure(storage_backend="memory")
    remote = subprocess.run(cli + ["create", "--url", live.url, "--admin-token", ADMIN_TOKEN, "--tenant", "beta",
                                   "--format", "json"], capture_output=True, text=True, timeout=60)
    assert remote.returncode == 0, remote.stderr
    token = json.loads(remote.stdout)["token"]
    assert httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers=bearer(token)).status_code == 200
    revoked = subprocess.run(cli + ["revoke", json.loads(remote.stdout)["token_id"], "--url", live.url,
                                    "--admin-token", ADMIN_TOKEN], capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(0.1)
    assert httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers=bearer(token)).status_code == 401
    refused = subprocess.run(cli + ["list", "--url", live.url, "--admin-token", "wrong" * 10],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "401" in refused.stderr


def test_do_not_track_is_validated_then_not_stored(secure) -> None:
    live = secure(storage_backend="memory")
    token = create_token(live.url, "acme")["token"]
    headers = {**bearer(token), "dnt": "1"}
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": "x"}] * 3, headers=headers).status_code == 204
    assert httpx.post(live.url + "/v1/events", json=[{"event_type": ""}], headers=headers).status_code == 400
    assert httpx.post(live.url + "/events", json={"event_type": "x"}, headers=headers).status_code == 204
    time.sleep(0.1)
    assert httpx.get(live.url + "/v1/events", headers=bearer(token)).json()["total_count"] == 0
    scrape = httpx.get(live.url + "/metrics").text
    assert 'tea_do_not_track_total{protocol="native"} 1.0' in scrape


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_api_key_header_and_bearer_both_work(secure, header: str) -> None:
    live = secure(storage_backend="memory")
    token = create_token(live.url, "acme")["token"]
    value = token if header == "x-api-key" else f"Bearer {token}"
    assert httpx.post(live.url + "/v1/events", json={"event_type": "x"}, headers={header: value}).status_code == 200


def test_cli_rotate_and_revoke_on_the_data_dir_are_audited(secure, tmp_path: Path) -> None:
    data = tmp_path / "data"  # the data dir `secure` serves next
    cli = [sys.executable, "-m", "tea", "token"]

    def tea_token(*args: str) -> dict:
        done = subprocess.run(cli + [*args, "--data-dir", str(data), "--format", "json"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    made = tea_token("create", "--tenant", "acme", "--tier", "pro")
    rotated = tea_token("rotate", made["token_id"])
    assert rotated["token_id"] == made["token_id"] and rotated["token"] != made["token"]
    assert rotated["secret"] != made["secret"] and rotated["tier"] == "pro"
    other = tea_token("create", "--tenant", "beta")
    tea_token("revoke", other["token_id"])
    live = secure(storage_backend="duckdb")
    assert httpx.get(live.url + "/v1/events", headers=bearer(made["token"])).status_code == 401  # the old value
    assert httpx.get(live.url + "/v1/events", headers=bearer(rotated["token"])).status_code == 200
    assert httpx.get(live.url + "/v1/events", headers=bearer(other["token"])).status_code == 401
    body = b'[{"event_type":"rotated"}]'
    assert signed_post(live.url, rotated["token"], rotated["secret"], body).status_code == 200  # the new secret
    rows = httpx.get(live.url + "/v1/audit", headers=admin_headers()).json()["entries"]
    cli_rows = [(r["action"], r["tenant_id"], r["details"]["token_id"]) for r in rows if r["details"].get("via") == "cli"]
    assert cli_rows == [("token_revoked", "beta", other["token_id"]), ("token_created", "beta", other["token_id"]),
                        ("token_rotated", "acme", made["token_id"]), ("token_created", "acme", made["token_id"])]
    assert all(r["actor"] == "cli" and r["details"]["os_user"] for r in rows if r["details"].get("via") == "cli")
    text = json.dumps(rows)
    assert made["secret"] not in text and rotated["token"] not in text


def test_a_short_secret_key_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import os
    env = {**os.environ, "TEA_SECRET_KEY": "too-short"}
    done = subprocess.run([sys.executable, "-m", "tea", "token", "create", "--tenant", "acme", "--data-dir",
                           str(tmp_path / "d")], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "tea token create: invalid TEA_SECRET_KEY: expected at least 32 characters"
    served = subprocess.run([sys.executable, "-m", "tea", "serve", "--port", "0", "--data-dir", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=60,
                            env={**env, "TEA_OTLP__GRPC_PORT": "0", "TEA_OTLP__HTTP_PORT": "0"})
    assert served.returncode == 2 and served.stderr.strip() == "tea: invalid TEA_SECRET_KEY: expected at least 32 characters"
    env["TEA_SECRET_KEY"] = "k" * 32  # exactly 32 is enough
    done = subprocess.run([sys.executable, "-m", "tea", "token", "create", "--tenant", "acme", "--data-dir",
                           str(tmp_path / "d"), "--format", "json"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("field, value", [("org_id", "not a uuid_x"), ("app_id", "7c9e6679"),
                                          ("org_id", ORG.replace("-", "")), ("app_id", APP + "0")])
def test_org_and_app_ids_must_be_uuids(secure, tmp_path: Path, field: str, value: str) -> None:
    live = secure(storage_backend="memory")
    ids = {"org_id": ORG, "app_id": APP, field: value}
    r = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "acme", **ids}, headers=admin_headers())
    assert r.status_code == 400 and r.json()["details"]["field"] == field and field in r.json()["message"]
    flags = ["--org", ids["org_id"], "--app", ids["app_id"]]
    done = subprocess.run([sys.executable, "-m", "tea", "token", "create", "--tenant", "acme", *flags, "--data-dir",
                           str(tmp_path / "cli")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"{field} must be a UUID" in done.stderr and "Traceback" not in done.stderr


def test_otlp_grpc_refuses_token_requests_it_cannot_verify(secure) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

    from tests.conftest import free_port
    port = free_port()
    live = secure(storage_backend="memory", otlp__grpc_port=port, auth__require_signature=True)
    token = create_token(live.url, "acme")["token"]
    request = trace_svc.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(trace_id=bytes(16 * [1]), span_id=bytes(8 * [1]),
                                                             name="s", start_time_unix_nano=time.time_ns(),
                                                             end_time_unix_nano=time.time_ns() + 1000)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = trace_grpc.TraceServiceStub(channel)
        for metadata in ((("authorization", f"Bearer {token}"),),  # unsigned, but signatures are required
                         (("authorization", f"Bearer {token}"), ("x-signature", "0" * 64), ("x-timestamp", "1"),
                          ("x-nonce", "n"))):
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(request, metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = stub.Export(request, metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),))  # no token: fine
        assert answer.partial_success.rejected_spans == 0
    finally:
        channel.close()
    rows = httpx.get(live.url + "/v1/audit", params={"action": "auth_failure"}, headers=admin_headers()).json()
    assert [r["details"]["path"] for r in rows["entries"]] == ["grpc", "grpc"]
    assert all(r["details"]["auth_method"] == "hmac" and r["details"]["token_id"] for r in rows["entries"])
