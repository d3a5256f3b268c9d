"""Canonical JSON (RFC 8785) and its SHA-256: the one way MonCore hashes any payload (DESIGN.md invariant 12)."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_bytes(value: Any) -> bytes:
    return bytes(rfc8785.dumps(value))


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()
