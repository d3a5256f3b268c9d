"""Webhook signatures (API.md "Webhooks"): HMAC-SHA256 over `<timestamp>.<raw body>`, pure, no I/O.

Header `MonCore-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`. A delivery is accepted when one of its `v1` values
equals the HMAC under one of the provider's active secrets (at most two: the new one and the one being retired, so
a secret can be rotated without refusing a single delivery), compared in constant time, and its timestamp is within
TOLERANCE_S of our clock (either side: clocks drift both ways). The timestamp is inside the signed bytes, so a captured
delivery replayed later fails the tolerance and cannot be re-dated without the secret.

The signature is checked before the timestamp, so a caller without the secret learns nothing about the tolerance.
Every failure is an InvalidSignature (401 `invalid_signature`) with a `reason`: missing_signature,
malformed_signature, signature_mismatch, timestamp_outside_tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from moncore.domain.errors import InvalidSignature

SIGNATURE_HEADER = "MonCore-Signature"
TOLERANCE_S = 300
MAX_ACTIVE_SECRETS = 2
SCHEME = "v1"
_MAX_HEADER_CHARS = 1024


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    timestamp_s: int
    secret_index: int  # 0 = the newest active secret, 1 = the one being retired


def signature_hex(secret: str, timestamp_s: int, raw_body: bytes) -> str:
    """The v1 signature of `raw_body` sent at `timestamp_s` under `secret`."""
    return hmac.new(secret.encode(), f"{timestamp_s}.".encode() + raw_body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp_s: int, raw_body: bytes) -> str:
    """The header value a provider (or the sandbox adapter, or a test) sends with `raw_body`."""
    return f"t={timestamp_s},{SCHEME}={signature_hex(secret, timestamp_s, raw_body)}"


def verify_signature(
    header: str | None,
    raw_body: bytes,
    secrets: Sequence[str],
    *,
    now_s: int,
    tolerance_s: int = TOLERANCE_S,
) -> VerifiedSignature:
    """Check a delivery's signature against the active secrets; InvalidSignature names why it fails."""
    timestamp_s, candidates = parse_signature_header(header)
    if not 1 <= len(secrets) <= MAX_ACTIVE_SECRETS or not all(secrets):
        # A configuration error on our side: fail closed rather than accept anything.
        raise ValueError(f"a provider needs 1 to {MAX_ACTIVE_SECRETS} non-empty active webhook secrets")
    matched: int | None = None
    for index, secret in enumerate(secrets):
        expected = signature_hex(secret, timestamp_s, raw_body)
        for candidate in candidates:
            # compare_digest on every pair (no early exit): timing tells nothing about which part matched.
            if hmac.compare_digest(expected, candidate) and matched is None:
                matched = index
    if matched is None:
        raise InvalidSignature("the signature does not match the body", reason="signature_mismatch")
    if abs(now_s - timestamp_s) > tolerance_s:
        raise InvalidSignature(
            f"the signature's timestamp is more than {tolerance_s} s away from now: a late or replayed delivery",
            reason="timestamp_outside_tolerance",
        )
    return VerifiedSignature(timestamp_s, matched)


def signed_timestamp(header: str | None) -> int | None:
    """The `t=` of a stored signature header (what an operator replay verifies it against), None if malformed."""
    try:
        return _parse(header or "")[0]
    except InvalidSignature:
        return None


def parse_signature_header(header: str | None) -> tuple[int, list[str]]:
    """(timestamp, v1 candidates) of a header; InvalidSignature when it is missing or malformed, which no secret could
    verify (so callers check it before looking secrets up)."""
    if not header:
        raise InvalidSignature(f"the {SIGNATURE_HEADER} header is missing", reason="missing_signature")
    return _parse(header)


def _parse(header: str) -> tuple[int, list[str]]:
    malformed = InvalidSignature(
        f"{SIGNATURE_HEADER} must be t=<unix seconds>,{SCHEME}=<hex HMAC-SHA256>", reason="malformed_signature"
    )
    if len(header) > _MAX_HEADER_CHARS:
        raise malformed
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator:
            raise malformed
        if name == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                raise malformed
            timestamp = int(value)
        elif name == SCHEME:
            if len(value) != 64 or any(char not in "0123456789abcdef" for char in value):
                raise malformed
            candidates.append(value)
        # other schemes (a future v2) are ignored, as providers document for forward compatibility
    if timestamp is None or not candidates:
        raise malformed
    return timestamp, candidates
