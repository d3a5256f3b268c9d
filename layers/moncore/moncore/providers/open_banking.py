"""Open banking port: collect funds into the tenant's safeguarding account (and, later, pay out).

Errors: ProviderUnavailable (retryable: nothing was collected, retry with the same idempotency key).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from moncore.domain.errors import ValidationFailed
from moncore.domain.ids import derived_id


class CollectionStatus(StrEnum):
    PENDING = "PENDING"
    SETTLED = "SETTLED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class CollectionRequest:
    tenant_id: str
    account_id: str
    amount_minor: int
    currency: str
    idempotency_ref: str  # our transaction id: the provider dedupes on it, so a retried call never collects twice


@dataclass(frozen=True, slots=True)
class CollectionResult:
    provider: str
    provider_ref: str
    status: CollectionStatus


class OpenBankingProvider(Protocol):
    name: str

    def collect(self, request: CollectionRequest) -> CollectionResult: ...


class SandboxOpenBanking:
    """Simulated provider: settles every collection at once, with a reference derived from our idempotency ref
    (so a retried call returns the same reference, like a real provider's idempotent API)."""

    name = "sandbox_open_banking"

    def collect(self, request: CollectionRequest) -> CollectionResult:
        return CollectionResult(
            provider=self.name,
            provider_ref=derived_id("sbxob", request.tenant_id, request.idempotency_ref),
            status=CollectionStatus.SETTLED,
        )


_ADAPTERS: dict[str, OpenBankingProvider] = {SandboxOpenBanking.name: SandboxOpenBanking()}


def open_banking_provider(name: str) -> OpenBankingProvider:
    """The adapter configured for a tenant."""
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ValidationFailed(f"open banking provider '{name}' is not configured") from None
