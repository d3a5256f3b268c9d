"""Open banking port: collect funds into the tenant's safeguarding account (a funding) and pay funds out to an
external IBAN (a withdrawal), plus the simulated sandbox adapters (docs/providers.md).

The port has three halves, like every provider port:
- `collect(CollectionRequest) -> Submission`: ask the payer's bank (through the provider) to pay us. The answer is
  the provider's reference and a status: PENDING (the outcome comes later by signed webhook: AUTHORIZED, then
  SETTLED or FAILED) or SETTLED (an instant-payment provider confirms in the response itself).
- `payout(PayoutRequest) -> Submission`: ask the provider to pay a beneficiary: PENDING (outcome by webhook:
  SETTLED or FAILED) or SETTLED (confirmed in the response).
- `parse_event(payload) -> ProviderEvent`: read one of the provider's own webhook payloads (after the inbox
  verified its signature) into what the kernel understands. Each adapter owns its provider's wire format, so
  swapping providers changes no kernel code.
Both calls are idempotent on `idempotency_ref` (our transaction id): a retried call answers the same reference and
never collects or pays twice. Which adapter a tenant uses is tenant configuration (`open_banking_provider`, its
default the stack parameter DefaultOpenBankingProvider), never the environment's name.

Errors: ProviderUnavailable (retryable: a retry with the same idempotency key resends the same request, which the
provider answers idempotently), ValidationFailed (unknown provider, malformed event).

The sandbox adapters (`sandbox_open_banking`: asynchronous like a real provider; `sandbox_open_banking_instant`:
settles in the response, for the local demo) pick a scenario from the account holder's external_ref, a marker
`ob_<scenario>` (e.g. "alice+ob_fail"), like the KYC sandbox. `SandboxOpenBanking.outbox(...)` builds the webhooks
the sandbox provider sends for a collection or payout, in the order it sends them, with the delay it signs them
with; tests and demos sign each with `domain.webhooks.signature_header` and POST it to /webhooks/<provider>.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from moncore.domain.errors import ProviderUnavailable, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.providers import registry
from moncore.providers.plugins import Adapters


class Status(StrEnum):
    """What the provider says of a collection or payout (in an answer or an event)."""

    PENDING = "PENDING"  # accepted; the outcome follows by webhook
    AUTHORIZED = "AUTHORIZED"  # the payer's bank authorised the payment (collections only)
    SETTLED = "SETTLED"  # the money moved
    FAILED = "FAILED"  # the payment will never happen


class Kind(StrEnum):
    COLLECTION = "collection"
    PAYOUT = "payout"


@dataclass(frozen=True, slots=True)
class CollectionRequest:
    tenant_id: str
    account_id: str
    amount_minor: int
    currency: str
    idempotency_ref: str  # our transaction id: the provider dedupes on it, so a retried call never collects twice
    payer_ref: str = ""  # the account holder's external reference (the sandbox reads its scenario from it)
    correlation_id: str = ""

    @property
    def reference(self) -> str:
        """What the provider echoes in every webhook about this payment: `<tenant id>:<transaction id>`."""
        return f"{self.tenant_id}:{self.idempotency_ref}"


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    tenant_id: str
    account_id: str
    amount_minor: int
    currency: str
    idempotency_ref: str  # our transaction id: a resent payout is the same payout, never a second one
    beneficiary_name: str
    beneficiary_iban: str  # electronic format (no spaces), validated
    payer_ref: str = ""
    correlation_id: str = ""

    @property
    def reference(self) -> str:
        return f"{self.tenant_id}:{self.idempotency_ref}"


@dataclass(frozen=True, slots=True)
class Submission:
    """The provider's answer to collect or payout: its reference and PENDING or SETTLED."""

    provider: str
    provider_ref: str
    status: Status


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A provider webhook, normalised: what it reports about which collection or payout."""

    event_id: str
    kind: Kind
    status: Status  # AUTHORIZED | SETTLED | FAILED (anything else is rejected as malformed)
    provider_ref: str
    reference: str  # `<tenant id>:<transaction id>` as we gave it
    amount_minor: int
    currency: str
    reason: str | None = None  # why it FAILED, in the provider's words


class OpenBankingProvider(Protocol):
    name: str

    def collect(self, request: CollectionRequest) -> Submission: ...

    def payout(self, request: PayoutRequest) -> Submission: ...

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent: ...


def parse_reference(reference: str) -> tuple[str, str] | None:
    """(tenant id, transaction id) of a reference built by CollectionRequest/PayoutRequest.reference, else None."""
    tenant_id, separator, txn_id = reference.partition(":")
    if not separator or not tenant_id or not txn_id or "#" in reference or ":" in txn_id or len(reference) > 200:
        return None
    return tenant_id, txn_id


# ------------------------------------------------------------------------------------------------ sandbox
class Scenario(StrEnum):
    """Chosen by `ob_<scenario>` in the account holder's external_ref (first match in this order)."""

    UNAVAILABLE = "unavailable"  # collect / payout raise ProviderUnavailable (the provider is down)
    FAIL = "fail"  # collection: authorized, then failed; payout: failed
    DUPLICATE = "duplicate"  # every webhook is sent twice (same event id)
    REORDER = "reorder"  # collection: settled is sent before authorized
    LATE = "late"  # webhooks are signed LATE_BY_S seconds ago (outside the 5-minute tolerance)
    INSTANT = "instant"  # settled in the response itself, no webhook
    NORMAL = "normal"  # collection: authorized, settled; payout: settled


LATE_BY_S = 600


def sandbox_scenario(payer_ref: str, default: Scenario = Scenario.NORMAL) -> Scenario:
    for scenario in Scenario:
        if f"ob_{scenario.value}" in payer_ref:
            return scenario
    return default


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One webhook the sandbox provider sends: its body, and how many seconds before now it signs it."""

    body: dict[str, Any]
    signed_ago_s: int = 0


class SandboxOpenBanking:
    """Simulated open banking provider. Its references derive from our transaction id (a retried call finds the
    same payment, like a real provider's idempotent API); outcomes come later as webhooks in its own wire format
    (`outbox` builds them, `parse_event` reads them). `default` is the scenario without a marker: NORMAL
    (asynchronous) for `sandbox_open_banking`, INSTANT for `sandbox_open_banking_instant`."""

    def __init__(self, name: str = "sandbox_open_banking", default: Scenario = Scenario.NORMAL) -> None:
        self.name = name
        self._default = default

    def collect(self, request: CollectionRequest) -> Submission:
        return self._submit(Kind.COLLECTION, request.tenant_id, request.idempotency_ref, request.payer_ref)

    def payout(self, request: PayoutRequest) -> Submission:
        return self._submit(Kind.PAYOUT, request.tenant_id, request.idempotency_ref, request.payer_ref)

    def provider_ref(self, kind: Kind, tenant_id: str, idempotency_ref: str) -> str:
        prefix = "sbxobc" if kind is Kind.COLLECTION else "sbxobp"
        return derived_id(prefix, self.name, tenant_id, idempotency_ref)

    def scenario(self, payer_ref: str) -> Scenario:
        """The holder's marker picks it; an instant adapter settles in the response whatever the marker, unless
        the provider is down (it stands for a bank that pays at once: a holder marked for the asynchronous
        sandbox's failures can still be funded through it)."""
        chosen = sandbox_scenario(payer_ref, self._default)
        if self._default is Scenario.INSTANT and chosen is not Scenario.UNAVAILABLE:
            return Scenario.INSTANT
        return chosen

    def outbox(
        self,
        kind: Kind,
        *,
        tenant_id: str,
        txn_id: str,
        amount_minor: int,
        currency: str,
        payer_ref: str = "",
    ) -> list[Outgoing]:
        """The webhooks this provider sends about the collection or payout of `txn_id`, in sending order."""
        scenario = self.scenario(payer_ref)
        if scenario in (Scenario.INSTANT, Scenario.UNAVAILABLE):
            return []
        if kind is Kind.COLLECTION:
            statuses = [Status.AUTHORIZED, Status.FAILED if scenario is Scenario.FAIL else Status.SETTLED]
        else:
            statuses = [Status.FAILED if scenario is Scenario.FAIL else Status.SETTLED]
        if scenario is Scenario.REORDER:
            statuses.reverse()
        provider_ref = self.provider_ref(kind, tenant_id, txn_id)
        sent = [
            Outgoing(
                {
                    "id": derived_id("sbxevt", provider_ref, status.value),
                    "type": f"{kind.value}.{status.value.lower()}",
                    "data": {
                        "id": provider_ref,
                        "reference": f"{tenant_id}:{txn_id}",
                        "amount": {"value_minor": amount_minor, "currency": currency},
                        **({"failure_reason": "payer_bank_rejected"} if status is Status.FAILED else {}),
                    },
                },
                LATE_BY_S if scenario is Scenario.LATE else 0,
            )
            for status in statuses
        ]
        if scenario is Scenario.DUPLICATE:
            sent = [copy for outgoing in sent for copy in (outgoing, outgoing)]
        return sent

    def parse_event(self, payload: Mapping[str, Any]) -> ProviderEvent:
        event_id, kind_status, data = payload.get("id"), payload.get("type"), payload.get("data")
        if not _text(event_id) or not _text(kind_status) or not isinstance(data, Mapping):
            raise _malformed("id, type and data are required")
        kind_text, _, status_text = str(kind_status).partition(".")
        try:
            kind, status = Kind(kind_text), Status(status_text.upper())
        except ValueError:
            raise _malformed(f"unknown event type {kind_status!r}") from None
        if status is Status.PENDING or (kind is Kind.PAYOUT and status is Status.AUTHORIZED):
            raise _malformed(f"unknown event type {kind_status!r}")
        amount = data.get("amount")
        provider_ref, reference = data.get("id"), data.get("reference")
        if not _text(provider_ref) or not _text(reference) or not isinstance(amount, Mapping):
            raise _malformed("data.id, data.reference and data.amount are required")
        value, currency = amount.get("value_minor"), amount.get("currency")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or not _text(currency):
            raise _malformed("data.amount needs a positive integer value_minor and a currency")
        reason = data.get("failure_reason")
        return ProviderEvent(
            str(event_id),
            kind,
            status,
            str(provider_ref),
            str(reference),
            value,
            str(currency),
            str(reason) if isinstance(reason, str) else None,
        )

    def _submit(self, kind: Kind, tenant_id: str, idempotency_ref: str, payer_ref: str) -> Submission:
        scenario = self.scenario(payer_ref)
        if scenario is Scenario.UNAVAILABLE:
            raise ProviderUnavailable(
                f"the open banking provider is unavailable ({kind.value}); retry with the same Idempotency-Key"
            )
        status = Status.SETTLED if scenario is Scenario.INSTANT else Status.PENDING
        return Submission(self.name, self.provider_ref(kind, tenant_id, idempotency_ref), status)


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


def _malformed(detail: str) -> ValidationFailed:
    return ValidationFailed(f"malformed open banking event: {detail}", errors=[{"loc": ["body"], "msg": detail}])


# ------------------------------------------------------------------------------------------------ adapters
SANDBOX = SandboxOpenBanking()
SANDBOX_INSTANT = SandboxOpenBanking("sandbox_open_banking_instant", Scenario.INSTANT)
DEFAULT_OPEN_BANKING_PROVIDER = SANDBOX.name
ADAPTERS: Adapters[OpenBankingProvider] = Adapters(
    "open banking provider", "open_banking_provider", ((a.name, a) for a in (SANDBOX, SANDBOX_INSTANT))
)


def register(adapter: OpenBankingProvider) -> None:
    """Make an adapter selectable by tenant configuration and its webhooks routable (providers/plugins.py loads
    modules that call this; an adapter shipped with the kernel is simply listed in ADAPTERS)."""
    registry.register(adapter.name, registry.OPEN_BANKING)
    ADAPTERS.register(adapter.name, adapter)


def open_banking_provider(name: str) -> OpenBankingProvider:
    """The adapter configured for a tenant (or named in a webhook path)."""
    return ADAPTERS.get(name)


def known_provider(name: str) -> bool:
    return ADAPTERS.known(name)
