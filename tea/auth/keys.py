"""Key material: the node-wide secret key, signing-secret encryption, token format and hashing."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tea.errors import ConfigError

KEY_FILE = "secret.key"
_ALPHABET = string.ascii_lowercase + string.digits


def check_secret_key(secret_key: str | None) -> None:
    """ConfigError for a TEA_SECRET_KEY shorter than 32 characters (unset is fine: the key file)."""
    if secret_key and len(secret_key) < 32:
        raise ConfigError("invalid TEA_SECRET_KEY: expected at least 32 characters")


def load_master_key(secret_key: str | None, data_dir: str) -> bytes:
    """TEA_SECRET_KEY (≥ 32 characters, the same on every node) or a 0600 key file made on first start."""
    if secret_key:
        check_secret_key(secret_key)
        return secret_key.encode("utf-8")
    path = os.path.join(data_dir, KEY_FILE)
    try:
        with open(path, "rb") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


class SecretBox:
    """AES-256-GCM with a key derived by HKDF-SHA256 from the master key."""

    def __init__(self, master_key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tea-token-secrets-v1",
                       info=b"signing-secret-encryption").derive(master_key)
        self._aead = AESGCM(derived)

    def seal(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))

    def open(self, sealed: bytes, context: str) -> str:
        return self._aead.decrypt(sealed[:12], sealed[12:], context.encode("utf-8")).decode("utf-8")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(org_id: str | None) -> str:
    """telemetry-kit's format: ``tk_`` + org UUID without dashes (or 32 random hex) + ``_`` + 32 chars."""
    middle = org_id.replace("-", "").lower() if org_id else secrets.token_hex(16)
    return f"tk_{middle}_{''.join(secrets.choice(_ALPHABET) for _ in range(32))}"


def new_secret() -> str:
    return secrets.token_hex(32)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison."""
    try:
        return hmac.compare_digest(a, b)  # (two ASCII strings, or two bytes: compared as they are, one call)
    except TypeError:  # a str and bytes, or a non-ASCII str: compared as UTF-8
        return hmac.compare_digest(a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b)
