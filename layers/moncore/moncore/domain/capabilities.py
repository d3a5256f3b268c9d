"""Tenant capabilities, their modes, and the four-eyes rule for changing them (pure: no I/O).

Issuer-gated ones start disabled until a licensed issuer has onboarded the tenant.

Modes (docs/capabilities-and-freezes.md):
- `live`: the only mode in which the gate allows an operation; the decision is recorded with the posting.
- `shadow`: configured and observed, never executed: the gate records a shadow decision (an audit event) and refuses
  with 403 `capability_disabled`, so nothing is created or posted.
- `disabled`: refused with 403 `capability_disabled`, nothing recorded beyond the refusal.

Turning a capability live needs a contract reference and two different admins (one requests, another approves);
any other change applies at once (it can only take risk away).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class Capability(StrEnum):
    WALLETS = "wallets"
    TRANSFERS = "transfers"
    FUNDINGS = "fundings"
    QR_PAYMENTS = "qr_payments"
    FX = "fx"
    CARD_FUNDING = "card_funding"
    CARD_ISSUING = "card_issuing"
    CARD_CLEARING = "card_clearing"
    WITHDRAWALS = "withdrawals"
    SETTLEMENT_FINALIZATION = "settlement_finalization"


class Mode(StrEnum):
    DISABLED = "disabled"
    SHADOW = "shadow"
    LIVE = "live"


ISSUER_GATED = frozenset(
    {Capability.CARD_ISSUING, Capability.CARD_CLEARING, Capability.WITHDRAWALS, Capability.SETTLEMENT_FINALIZATION}
)


def default_capabilities() -> dict[str, str]:
    return {cap.value: (Mode.DISABLED if cap in ISSUER_GATED else Mode.LIVE).value for cap in Capability}


class RequestStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"  # shown for a PENDING request past its expiry; never stored


# A pending request is a standing authorisation to take risk; it lapses so an old one cannot be approved by surprise.
REQUEST_TTL = timedelta(days=7)


def needs_four_eyes(mode: Mode) -> bool:
    """Only a change to live needs a second admin: disabling or shadowing can only take risk away."""
    return mode is Mode.LIVE


def allows(mode: str) -> bool:
    """Whether the gate lets an operation of a capability in `mode` through (an unknown mode never does)."""
    return mode == Mode.LIVE.value


def shown_status(status: str, expires_at: str, now: str) -> RequestStatus:
    """The request's status as answered: a stored PENDING past `expires_at` (RFC 3339, same format as `now`) is
    EXPIRED."""
    if status == RequestStatus.PENDING.value and expires_at <= now:
        return RequestStatus.EXPIRED
    return RequestStatus(status)
