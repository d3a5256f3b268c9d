"""Tenant capabilities and their modes.

Issuer-gated ones start disabled until a licensed issuer has onboarded the tenant.
"""

from __future__ import annotations

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
