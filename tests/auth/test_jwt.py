"""JWT / OIDC bearer tokens with real keys, a JWKS served over HTTP on loopback by the test."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.auth.conftest import bearer

ISSUER = "https://issuer.test"
AUDIENCE = "tea"
HS_SECRET = "hs256-secret-" + "s" * 32


def jwk(public_key: Any, kid: str, algorithm: str) -> dict:
    cls = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[algorithm]
    return {**json.loads(cls.to_jwk(public_key)), "kid": kid, "alg": algorithm, "use": "sig"}


class Keys:
    def __init__(self) -> None:
        self.private = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
                        "ES256": ec.generate_private_key(ec.SECP256R1()),
                        "EdDSA": ed25519.Ed25519PrivateKey.generate()}
        self.jwks = {"keys": [jwk(k.public_key(), f"kid-{alg}", alg) for alg, k in self.private.items()]}
        self.fetches = 0


class JwksServer:
    def __init__(self, keys: Keys) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                keys.fetches += 1
                body = json.dumps(keys.jwks).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        owner.keys = keys

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    server = JwksServer(keys)
    yield server
    server.stop()


@pytest.fixture
def server(secure, jwks_server: JwksServer):  # type: ignore[no-untyped-def]
    return secure(storage_backend="memory", auth__jwks_url=jwks_server.url, auth__jwt_secret=HS_SECRET,
                  auth__issuer=ISSUER, auth__audience=AUDIENCE, auth__leeway_s=5.0)


def claims(**overrides: Any) -> dict:
    now = int(time.time())
    base = {"sub": "user-1", "tenant": "acme", "org": "acme-org", "scope": "events:read events:write",
            "iat": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(keys: Keys, algorithm: str, payload: dict, kid: str | None = None) -> str:
    if algorithm == "HS256":
        return jwt.encode(payload, HS_SECRET, algorithm="HS256")
    return jwt.encode(payload, keys.private[algorithm], algorithm=algorithm,
                      headers={"kid": kid or f"kid-{algorithm}"})


def post(server, token: str, tenant: str | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    event = {"event_type": "jwt-test", **({"tenant_id": tenant} if tenant else {})}
    return httpx.post(server.url + "/v1/events", json=event, headers=bearer(token))


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256", "EdDSA"])
def test_valid_tokens_of_every_algorithm(server, keys: Keys, algorithm: str) -> None:
    token = sign(keys, algorithm, claims())
    r = post(server, token)
    assert r.status_code == 200, r.text
    server.wait_stored(1)
    events = httpx.get(server.url + "/v1/events", headers=bearer(token)).json()["events"]
    assert [e["tenant_id"] for e in events] == ["acme"]


@pytest.mark.parametrize("make, code", [  # claims built when the test runs: a long suite outlives exp = now + 300
    (lambda: claims(exp=int(time.time()) - 60), "token_expired"),
    (lambda: claims(nbf=int(time.time()) + 600), "invalid_token"),
    (lambda: claims(iss="https://evil.test"), "invalid_token"),
    (lambda: claims(aud="someone-else"), "invalid_token"),
    (lambda: claims(exp=None), "invalid_token"),
    (lambda: claims(tenant=None), "invalid_token"),
], ids=["expired", "not-yet-valid", "issuer", "audience", "no-exp", "no-tenant"])
def test_bad_claims_are_401(server, keys: Keys, make, code: str) -> None:  # type: ignore[no-untyped-def]
    r = post(server, sign(keys, "RS256", make()))
    assert r.status_code == 401 and r.json()["error"] == code, r.text


def test_leeway_accepts_a_token_that_just_expired(server, keys: Keys) -> None:
    assert post(server, sign(keys, "ES256", claims(exp=int(time.time()) - 2))).status_code == 200


def test_alg_none_and_algorithm_confusion_are_refused(server, keys: Keys) -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert post(server, unsigned).status_code == 401
    # HS256 keyed with the RSA *public key*: must never verify (asymmetric keys never act as HMAC secrets)
    pem = keys.private["RS256"].public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac as hmac_mod
    import base64
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "kid-RS256"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac_mod.new(pem, header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
    forged = (header + b"." + body + b"." + sig).decode()
    r = post(server, forged)
    assert r.status_code == 401


def test_tampered_signature_is_refused(server, keys: Keys) -> None:
    token = sign(keys, "RS256", claims())
    head, body, sig = token.split(".")
    other = sign(keys, "RS256", claims(tenant="globex")).split(".")[1]
    assert post(server, f"{head}.{other}.{sig}").status_code == 401
    assert post(server, f"{head}.{body}.{sig[:-4]}AAAA").status_code == 401


def test_unknown_kid_refetches_the_jwks_then_refuses(server, keys: Keys) -> None:
    fetches_before = keys.fetches
    assert post(server, sign(keys, "RS256", claims(), kid="kid-unknown")).status_code == 401
    assert keys.fetches == fetches_before + 1  # asked the issuer once for the unknown kid


def test_key_rotation_is_picked_up_on_an_unknown_kid(secure, keys: Keys, jwks_server: JwksServer) -> None:
    live = secure(storage_backend="memory", auth__jwks_url=jwks_server.url, auth__issuer=ISSUER,
                  auth__audience=AUDIENCE, auth__jwks_refresh_min_s=0.0)
    assert post(live, sign(keys, "ES256", claims())).status_code == 200
    fresh = ec.generate_private_key(ec.SECP256R1())
    keys.jwks["keys"].append(jwk(fresh.public_key(), "kid-new", "ES256"))
    token = jwt.encode(claims(), fresh, algorithm="ES256", headers={"kid": "kid-new"})
    assert post(live, token).status_code == 200


def test_claim_mapping_and_scopes(server, keys: Keys) -> None:
    read_only = sign(keys, "RS256", claims(scope=None, scp=["events:read"], tenant=None, tenant_id="beta"))
    r = post(server, read_only)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert httpx.get(server.url + "/v1/events", headers=bearer(read_only)).status_code == 200
    writer = sign(keys, "EdDSA", claims(scope=None, scopes=["events:write"]))
    assert post(server, writer).status_code == 200
    assert httpx.get(server.url + "/v1/events", headers=bearer(writer)).status_code == 403


def test_a_jwt_cannot_write_to_another_tenant(server, keys: Keys) -> None:
    r = post(server, sign(keys, "RS256", claims()), tenant="globex")
    assert r.status_code == 400
    [error] = r.json()["details"]["errors"]
    assert error["error"] == "forbidden_tenant" and error["field"] == "tenant_id"


def test_jwks_fetch_does_not_block_the_event_loop(secure, keys: Keys) -> None:
    # a JWKS URL that never answers: requests wait for their own fetch, the server keeps serving others
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks"
    live = secure(storage_backend="memory", auth__jwks_url=url, auth__issuer=ISSUER, auth__audience=AUDIENCE,
                  auth__jwks_timeout_s=3.0)
    result: dict = {}
    waiting = threading.Thread(target=lambda: result.update(r=post(live, sign(keys, "RS256", claims()))))
    waiting.start()
    time.sleep(0.3)
    assert httpx.get(live.url + "/healthz").status_code == 200
    assert waiting.is_alive()  # answered while the request with the JWT still waits for the JWKS fetch
    waiting.join(30)
    silent.close()
    assert result["r"].status_code == 401


def test_keys_from_a_jwks_file(secure, keys: Keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys.jwks))
    live = secure(storage_backend="memory", auth__jwks_file=str(path), auth__issuer=ISSUER, auth__audience=AUDIENCE)
    for algorithm in ("RS256", "ES256", "EdDSA"):
        assert post(live, sign(keys, algorithm, claims())).status_code == 200, algorithm
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # a key the file does not hold
    forged = jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "kid-RS256"})
    assert post(live, forged).status_code == 401
    r = post(live, sign(keys, "RS256", claims(), kid="kid-elsewhere"))
    assert r.status_code == 401 and "unknown key id" in r.json()["message"]


def test_the_algorithm_allow_list_holds_beyond_none(secure, keys: Keys, jwks_server: JwksServer) -> None:
    live = secure(storage_backend="memory", auth__jwks_url=jwks_server.url, auth__jwt_secret=HS_SECRET,
                  auth__issuer=ISSUER, auth__audience=AUDIENCE, auth__algorithms="RS256")
    assert post(live, sign(keys, "RS256", claims())).status_code == 200
    for token in (sign(keys, "HS256", claims()), sign(keys, "ES256", claims()),
                  jwt.encode(claims(), HS_SECRET * 2, algorithm="HS512"),
                  jwt.encode(claims(), keys.private["RS256"], algorithm="RS384", headers={"kid": "kid-RS256"})):
        r = post(live, token)
        assert r.status_code == 401 and "is not allowed" in r.json()["message"], r.text


def test_a_public_key_is_never_an_hmac_secret(secure, keys: Keys, jwks_server: JwksServer) -> None:
    # HS256 allowed, but no auth.jwt_secret: an HS256 token keyed with the issuer's public key must fail
    live = secure(storage_backend="memory", auth__jwks_url=jwks_server.url, auth__issuer=ISSUER,
                  auth__audience=AUDIENCE, auth__algorithms="HS256,RS256")
    for algorithm, encoding in (("RS256", serialization.Encoding.PEM), ("RS256", serialization.Encoding.DER)):
        public = keys.private[algorithm].public_key().public_bytes(
            encoding, serialization.PublicFormat.SubjectPublicKeyInfo)
        forged = hs256(public, claims(), kid="kid-RS256")
        r = post(live, forged)
        assert r.status_code == 401 and "is not allowed" in r.json()["message"], r.text
    assert post(live, sign(keys, "RS256", claims())).status_code == 200


def hs256(secret: bytes, payload: dict, kid: str | None = None) -> str:
    """An HS256 JWT made by hand (PyJWT refuses to use a PEM public key as an HMAC secret)."""
    import base64
    import hashlib
    import hmac as hmac_mod

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}).encode())
    body = b64(json.dumps(payload).encode())
    return (header + b"." + body + b"." + b64(hmac_mod.new(secret, header + b"." + body, hashlib.sha256).digest())).decode()


def test_claim_names_are_configurable(secure, keys: Keys, jwks_server: JwksServer) -> None:
    live = secure(storage_backend="memory", auth__jwks_url=jwks_server.url, auth__issuer=ISSUER,
                  auth__audience=AUDIENCE, auth__tenant_claim="https://tea/tenant", auth__user_claim="email",
                  auth__org_claim="https://tea/org", auth__scope_claim="permissions")
    token = sign(keys, "RS256", claims(tenant=None, sub="ignored", org=None, scope=None,
                                       **{"https://tea/tenant": "renamed", "email": "ana@example.com",
                                          "https://tea/org": "org-7", "permissions": ["events:write"]}))
    assert post(live, token).status_code == 200
    assert httpx.get(live.url + "/v1/events", headers=bearer(token)).status_code == 403  # write scope only
    principal = live.app.auth.jwt._principal(jwt.decode(token, options={"verify_signature": False}))
    assert (principal.tenant_id, principal.user_id, principal.organization, principal.scopes) == (
        "renamed", "ana@example.com", "org-7", frozenset({"events:write"}))
    # the renamed claim replaces `tenant`; `tenant_id` still works; `tenant` alone no longer does
    assert post(live, sign(keys, "RS256", claims(tenant=None, tenant_id="fallback"))).status_code == 200
    r = post(live, sign(keys, "RS256", claims()))
    assert r.status_code == 401 and "https://tea/tenant" in r.json()["message"]
    live.wait_stored(2)
    admin = httpx.get(live.url + "/v1/events", headers={"authorization": "Bearer " + "admin-" + "x" * 40}).json()
    assert sorted(e["tenant_id"] for e in admin["events"]) == ["fallback", "renamed"]


def test_an_unknown_tier_claim_is_refused(server, keys: Keys) -> None:
    r = post(server, sign(keys, "RS256", claims(tier="platinum")))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token" and "platinum" in r.json()["message"]
    assert post(server, sign(keys, "RS256", claims(tier="pro"))).status_code == 200


def test_a_token_without_kid_uses_the_only_key_of_its_type(secure, keys: Keys, jwks_server: JwksServer) -> None:
    live = secure(storage_backend="memory", auth__jwks_url=jwks_server.url, auth__issuer=ISSUER,
                  auth__audience=AUDIENCE, auth__jwks_refresh_min_s=0.0)
    no_kid = jwt.encode(claims(), keys.private["ES256"], algorithm="ES256")
    assert "kid" not in jwt.get_unverified_header(no_kid)
    assert post(live, no_kid).status_code == 200  # the set holds one EC key
    assert post(live, jwt.encode(claims(), keys.private["RS256"], algorithm="RS256")).status_code == 200
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert post(live, jwt.encode(claims(), stranger, algorithm="ES256")).status_code == 401  # one key, wrong one
    keys.jwks["keys"].append(jwk(stranger.public_key(), "kid-second-ec", "ES256"))
    second = jwt.encode(claims(), stranger, algorithm="ES256", headers={"kid": "kid-second-ec"})
    assert post(live, second).status_code == 200  # (the set is fetched again for the new kid)
    r = post(live, no_kid)  # two EC keys: the token cannot say which
    assert r.status_code == 401 and "exactly one EC key" in r.json()["message"]
