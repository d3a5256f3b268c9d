"""Identifiers: opaque, time-ordered random ids, and ids derived from (tenant, idempotency key).

A transaction id derived from the idempotency key is what lets the ledger's own conditional write refuse a
second posting
even after the idempotency record has expired (DESIGN.md invariant 4).
"""

from __future__ import annotations

import hashlib
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`prefix_` + a ULID-shaped 26-char id: 48 bits of milliseconds then 80 random bits, sortable by creation time."""
    now_ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_b32(now_ms, 10)}{_b32(secrets.randbits(80), 16)}"


def derived_id(prefix: str, *parts: str) -> str:
    """Deterministic id from its parts (unit-separator joined, SHA-256, 130 bits kept): same parts, same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return f"{prefix}_{_b32(int.from_bytes(digest[:17], 'big') >> 6, 26)}"
