"""Provider lifecycle events (card authorisation, capture, authorisation reversal, refund) applied to the ledger.

Providers deliver events at least once and in any order. This service makes the outcome depend only on the SET of
events (invariant 9):
- a redelivered event (same provider event id) is recognised in the inbox and changes nothing;
- every event becomes one lifecycle step whose op id derives from the provider event id, so even a lost inbox record
  cannot apply it twice (the ledger's op guard and sequence slots refuse it);
- an event that arrives before its prerequisite (a capture before its authorisation, a refund before the capture it
  refunds) is parked and applied as soon as the prerequisite lands; after parking it is tried once more, so a
  prerequisite that landed meanwhile is never missed;
- an event the lifecycle can never accept (a capture after the hold was closed) is rejected with its reason.
Amounts are explicit on every event (a partial authorisation reversal names what it releases), which is what makes
the order irrelevant: the final state is the authorised amount, minus what was released, captured in parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from moncore.compliance.movements import MovementChecks
from moncore.domain.canonical import sha256_hex
from moncore.domain.capabilities import Capability
from moncore.domain.context import Caller, RequestIdentity
from moncore.domain.errors import DomainError, NotFound, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.money import check_amount_minor, currency_exponent
from moncore.domain.transactions import EventKind, TxnStatus, TxnType, hold_pair
from moncore.ledger import views
from moncore.ledger.directory import DIRECTORY
from moncore.ledger.lifecycle import LifecycleService
from moncore.ledger.service import (
    create,
    decide_movement,
    first_event,
    hold_expiry,
    new_transaction,
    require_user_account,
    system_account,
)
from moncore.store import ledger as ledger_store
from moncore.store import provider_events as inbox
from moncore.tenancy.service import TenancyService

CARD_CLEARING = "card_clearing"


class CardEventKind(StrEnum):
    AUTHORIZATION = "authorization"
    CAPTURE = "capture"
    REVERSAL = "reversal"  # authorisation reversal: releases `amount_minor` of the hold
    REFUND = "refund"  # corrects a settled capture with a linked reversing transaction


class Outcome(StrEnum):
    APPLIED = "applied"
    PARKED = "parked"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class CardEvent:
    provider: str
    event_id: str
    kind: CardEventKind
    authorization_ref: str  # the scheme's id of the authorisation every later event refers to
    amount_minor: int
    currency: str
    account_id: str | None = None  # authorisation only: the card's account
    hold_expires_at: str | None = None  # authorisation only


class ProviderEventService:
    def __init__(self, tenancy: TenancyService | None = None, lifecycle: LifecycleService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._lifecycle = lifecycle or LifecycleService()
        self._checks = MovementChecks(self._tenancy)

    def apply_card_event(self, tenant_id: str, event: CardEvent) -> Outcome:
        check_amount_minor(event.amount_minor)
        currency_exponent(event.currency)
        if (event.kind is CardEventKind.AUTHORIZATION) != (event.account_id is not None):
            raise ValidationFailed("account_id is required on an authorization and only there")
        txn_id = card_txn_id(tenant_id, event)
        record = inbox.receive(tenant_id, event.provider, event.event_id, txn_id, _payload(event))
        if record.payload_hash != sha256_hex(_payload(event)):
            raise ValidationFailed(f"provider event {event.event_id} was delivered before with another payload")
        if record.status in (inbox.APPLIED, inbox.REJECTED):
            return Outcome.DUPLICATE
        outcome, reason = self._attempt(tenant_id, event)
        if outcome is Outcome.PARKED:
            inbox.park(record)
            outcome, reason = self._attempt(tenant_id, event)  # the prerequisite may have landed meanwhile
            if outcome is Outcome.PARKED:
                return outcome
        inbox.close(record, inbox.APPLIED if outcome is Outcome.APPLIED else inbox.REJECTED, reason)
        if outcome is Outcome.APPLIED:
            self._drain(tenant_id, txn_id)
        return outcome

    def _drain(self, tenant_id: str, txn_id: str) -> None:
        """Apply parked events of the transaction until none of them can make progress."""
        progress = True
        while progress:
            progress = False
            for record in inbox.parked_for(tenant_id, txn_id):
                parked = CardEvent(**{**record.payload, "kind": CardEventKind(record.payload["kind"])})
                outcome, reason = self._attempt(tenant_id, parked)
                if outcome is not Outcome.PARKED:
                    inbox.close(record, inbox.APPLIED if outcome is Outcome.APPLIED else inbox.REJECTED, reason)
                    progress = True

    def _attempt(self, tenant_id: str, event: CardEvent) -> tuple[Outcome, str]:
        caller = Caller(
            tenant_id=tenant_id,
            actor=f"provider:{event.provider}",
            role="system",
            correlation_id=f"{event.provider}:{event.event_id}",
        )
        payload = _payload(event)
        request = RequestIdentity(
            idempotency_key=f"{event.provider}:{event.event_id}",
            request_hash=sha256_hex(payload),
            fingerprint={name: sha256_hex(value) for name, value in payload.items()},
        )
        txn_id = card_txn_id(tenant_id, event)
        try:
            if event.kind is CardEventKind.AUTHORIZATION:
                self._authorize(caller, request, txn_id, event)
            elif event.kind is CardEventKind.CAPTURE:
                self._lifecycle.capture(caller, request, txn_id, amount_minor=event.amount_minor)
            elif event.kind is CardEventKind.REVERSAL:
                self._lifecycle.void(caller, request, txn_id, amount_minor=event.amount_minor)
            else:
                self._lifecycle.reverse(caller, request, txn_id, amount_minor=event.amount_minor, reason="refund")
        except NotFound:
            return (Outcome.PARKED, "") if event.kind is not CardEventKind.AUTHORIZATION else _rejected("not_found")
        except DomainError as refused:
            if event.kind is CardEventKind.REFUND and self._still_open(tenant_id, txn_id):
                return Outcome.PARKED, ""  # the captures it refunds have not all landed yet
            return _rejected(refused.code)
        return Outcome.APPLIED, ""

    def _authorize(self, caller: Caller, request: RequestIdentity, txn_id: str, event: CardEvent) -> None:
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.CARD_ISSUING, caller)
        (card_account,) = DIRECTORY.resolve(tenant_id, [event.account_id or ""], event.currency)
        require_user_account(card_account)
        clearing = system_account(tenant_id, CARD_CLEARING, event.currency)
        # An authorisation counts against the cardholder's limits when it is placed (docs/limits-and-geo.md).
        decision = decide_movement(self._checks, caller, txn_id, debit=card_account, debit_minor=event.amount_minor)
        if decision is None:
            return  # authorised before: the ledger holds it
        txn = new_transaction(
            caller,
            request,
            txn_id,
            TxnType.CARD,
            event.amount_minor,
            event.currency,
            gate=gate,
            provider=event.provider,
            provider_ref=event.authorization_ref,
            capture="manual",
            hold_expires_at=hold_expiry(event.hold_expires_at),
            checks=decision.checks,
        )
        legs = hold_pair(card_account, clearing, event.amount_minor)
        create(caller, request, txn, first_event(caller, request, txn, EventKind.AUTHORIZED, legs), decision=decision)

    def _still_open(self, tenant_id: str, txn_id: str) -> bool:
        stored = ledger_store.load_transaction(tenant_id, txn_id)
        return stored is not None and views.txn_state(stored).status is TxnStatus.AUTHORIZED


def card_txn_id(tenant_id: str, event: CardEvent) -> str:
    """Every event of one authorisation lands on the same transaction, whatever order they come in."""
    return derived_id("txn", tenant_id, "card", event.provider, event.authorization_ref)


def _payload(event: CardEvent) -> dict[str, Any]:
    return {name: (value.value if isinstance(value, StrEnum) else value) for name, value in asdict(event).items()}


def _rejected(code: str) -> tuple[Outcome, str]:
    return Outcome.REJECTED, code
