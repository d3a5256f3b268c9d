"""API key format and keyed hashing.

A key is `mc.<key_id>.<secret>`: the key id locates the credential (one GetItem), the secret is checked against an
HMAC-SHA256 under a pepper held in Secrets Manager, compared in constant time. A leaked credentials table alone
therefore reveals no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from moncore.domain.ids import new_id

_KEY_RE = re.compile(r"^mc\.(key_[0-9A-Z]{26})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    api_key: str  # shown once, never stored


def generate() -> IssuedKey:
    key_id = new_id("key")
    return IssuedKey(key_id=key_id, api_key=f"mc.{key_id}.{secrets.token_urlsafe(32)}")


def parse(api_key: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None (no lookup is made for malformed input)."""
    match = _KEY_RE.match(api_key)
    return (match.group(1), match.group(2)) if match else None


def keyed_hash(pepper: bytes, key_id: str, secret: str) -> str:
    return hmac.new(pepper, f"{key_id}.{secret}".encode(), hashlib.sha256).hexdigest()


def matches(pepper: bytes, key_id: str, secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(keyed_hash(pepper, key_id, secret), stored_hash)
