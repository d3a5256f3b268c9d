"""Settlement records as pure data: what one provider settles with the tenant for one value date and currency
(docs/settlement.md). No I/O.

The payload is what is signed: canonical JSON (RFC 8785) of the tenant, provider, clearing purpose, currency, value
date, net amount, item count and the sorted ids of the settled transactions; its SHA-256 is recorded beside the KMS
signature, so anyone holding the public key can check a record without MonCore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moncore.domain.canonical import canonical_bytes, sha256_hex
from moncore.domain.ids import derived_id

# The clearing system accounts providers settle: open banking collections and payouts, card clearings. Which provider
# an item belongs to is read from its leg (legs carry the provider that executed them), never from today's tenant
# configuration: a tenant that switched adapters mid-day still settles each provider's items with that provider.
FUNDING_CLEARING = "funding_clearing"  # open banking collections: the provider owes what it collected
PAYOUT_CLEARING = "payout_clearing"  # withdrawals: the tenant owes the provider what it paid out
CARD_CLEARING = "card_clearing"  # card authorisations and clearings with the processor
SETTLED_PURPOSES = (CARD_CLEARING, FUNDING_CLEARING, PAYOUT_CLEARING)
UNATTRIBUTED = "unattributed"  # legs written before legs carried their provider (settled apart, for an operator)
SAFEGUARDING = "safeguarding"  # the system account mirroring the client money held at the safeguarding bank


@dataclass(frozen=True, slots=True)
class SettlementBatch:
    """One unit of the settlement run (one Map iteration): a clearing purpose in one currency on one value date; it
    yields one settlement per provider found among the day's settled legs."""

    tenant_id: str
    value_date: str  # YYYY-MM-DD (UTC)
    purpose: str
    currency: str

    def record(self) -> dict[str, str]:
        return {
            "tenant_id": self.tenant_id,
            "value_date": self.value_date,
            "purpose": self.purpose,
            "currency": self.currency,
        }

    def of(self, provider: str) -> SettlementKey:
        return SettlementKey(self, provider)


@dataclass(frozen=True, slots=True)
class SettlementKey:
    """What one settlement record is about: a batch's items of one provider."""

    batch: SettlementBatch
    provider: str

    @property
    def provider_reference(self) -> str:
        """Unique per (tenant, provider, purpose, currency, value date): the settlement's identity everywhere."""
        b = self.batch
        return f"{self.provider}:{b.purpose}:{b.currency}:{b.value_date}"

    @property
    def settlement_id(self) -> str:
        return derived_id("stl", self.batch.tenant_id, self.provider_reference)


@dataclass(frozen=True, slots=True)
class SettlementPayload:
    key: SettlementKey
    amount_minor: int  # what the provider owes the tenant for the day (the clearing account's net settled debit)
    item_count: int
    txn_ids: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {
            "settlement_id": self.key.settlement_id,
            "provider_reference": self.key.provider_reference,
            **self.key.batch.record(),
            "provider": self.key.provider,
            "amount_minor": self.amount_minor,
            "item_count": self.item_count,
            "txn_ids": sorted(self.txn_ids),
        }

    def signed_bytes(self) -> bytes:
        return canonical_bytes(self.document())

    @property
    def payload_sha256(self) -> str:
        return sha256_hex(self.document())


def net_settled(amounts_minor: list[int]) -> int:
    """The provider's debt for the day: the clearing account gave out (negative legs) what the provider collected;
    returned as a positive amount (a negative one means the tenant owes the provider, e.g. payouts and refunds)."""
    return -sum(amounts_minor)
