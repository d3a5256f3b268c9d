"""Provider lifecycle events (card authorisation, incremental authorisation, capture = clearing, authorisation
reversal, refund) applied to the ledger.

Providers deliver events at least once and in any order. This service makes the outcome independent of the delivery
order (invariant 9):
- a redelivered event (same provider event id) is recognised in the inbox and changes nothing;
- every event becomes one lifecycle step whose op id derives from the provider event id, so even a lost inbox record
  cannot apply it twice (the ledger's op guard and sequence slots refuse it);
- an event that arrives before its prerequisite is parked and applied as soon as the prerequisite lands; after
  parking it is tried once more, so a prerequisite that landed meanwhile is never missed. Without a `sequence` the
  prerequisites are implied by the amounts (a capture waits for its authorisation, a refund for the captures it
  refunds), which is enough when every amount is explicit and the hold never grows. With the processor's `sequence`
  (numbering the events of one authorisation as the processor produced them: needed once increments exist, since a
  capture of the whole hold would otherwise close it before an increment arrives) event n waits until event n-1 was
  applied or rejected, so events apply exactly in the processor's order whatever the delivery order;
- an event the lifecycle can never accept (a capture after the hold was closed, an authorisation the compliance
  checks decline) is rejected with its reason, and the next event of the sequence may go on.
Amounts are explicit on every event (a partial authorisation reversal names what it releases).

Authorisations and increments need `card_issuing` live and the card ACTIVE (a condition of the posting); captures and
refunds are posted only while `card_clearing` is live, else computed and recorded (moncore.ledger.card_clearing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from moncore.compliance.movements import MovementChecks
from moncore.compliance.refusals import audit_refusal
from moncore.domain.aml import Operation
from moncore.domain.canonical import sha256_hex
from moncore.domain.capabilities import Capability
from moncore.domain.cards import check_card, check_merchant_country
from moncore.domain.context import Caller, RequestIdentity
from moncore.domain.errors import DomainError, NotFound, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.money import check_amount_minor, currency_exponent
from moncore.domain.settlement import CARD_CLEARING
from moncore.domain.transactions import EventKind, TxnStatus, TxnType, hold_pair
from moncore.ledger import views
from moncore.ledger.card_clearing import CardClearing, ClearingEvent
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
from moncore.store import cards as card_store
from moncore.store import ledger as ledger_store
from moncore.store import provider_events as inbox
from moncore.store.models import ProviderEventItem
from moncore.tenancy.service import TenancyService


class CardEventKind(StrEnum):
    AUTHORIZATION = "authorization"
    INCREMENT = "incremental_authorization"  # the hold grows by `amount_minor`
    CAPTURE = "capture"  # a clearing: settles `amount_minor` of the hold (`final`: then releases the rest)
    REVERSAL = "reversal"  # authorisation reversal: releases `amount_minor` of the hold
    REFUND = "refund"  # corrects a settled capture with a linked reversing transaction


class Outcome(StrEnum):
    APPLIED = "applied"
    RECORDED = "recorded"  # a clearing or refund computed and recorded, not posted (card_clearing not live)
    PARKED = "parked"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


SHADOW_OUTCOME = "shadow"  # the inbox's outcome of a RECORDED event (status APPLIED: nothing more to do)


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
    card_id: str | None = None  # the card (authorisations and increments need it ACTIVE)
    merchant_country: str | None = None  # authorisation only: a FATF call-for-action country is declined
    sequence: int | None = None  # the processor's number of this event within its authorisation (1, 2, ...)
    final: bool = False  # capture only: the last clearing of the authorisation; the rest of the hold is released
    # The correlation id of the delivery that brought the event (its webhook's X-Correlation-Id): carried by every
    # step and audit event the event causes, even when it is applied later (parked). Not part of the event itself:
    # a redelivery with another correlation id is the same event.
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of one delivery of an event: the outcome, the refusal's code when rejected, the transaction, and
    for a duplicate how the first delivery was closed (APPLIED / REJECTED / PARKED, ...)."""

    outcome: Outcome
    reason: str
    txn_id: str
    first_status: str | None = None


class ProviderEventService:
    def __init__(
        self,
        tenancy: TenancyService | None = None,
        lifecycle: LifecycleService | None = None,
        clearing: CardClearing | None = None,
    ) -> None:
        self._tenancy = tenancy or TenancyService()
        self._lifecycle = lifecycle or LifecycleService()
        self._checks = MovementChecks(self._tenancy)
        self._clearing = clearing or CardClearing(self._tenancy, self._lifecycle)

    def apply_card_event(self, tenant_id: str, event: CardEvent) -> Outcome:
        return self.apply(tenant_id, event).outcome

    def apply(self, tenant_id: str, event: CardEvent) -> Applied:
        check_amount_minor(event.amount_minor)
        currency_exponent(event.currency)
        if (event.kind is CardEventKind.AUTHORIZATION) != (event.account_id is not None):
            raise ValidationFailed("account_id is required on an authorization and only there")
        if event.sequence is not None and (isinstance(event.sequence, bool) or event.sequence < 1):
            raise ValidationFailed("sequence must be a positive integer")
        if event.final and event.kind is not CardEventKind.CAPTURE:
            raise ValidationFailed("only a capture (clearing) can be final")
        txn_id = card_txn_id(tenant_id, event)
        record = inbox.receive(
            tenant_id, event.provider, event.event_id, txn_id, _payload(event), correlation_id=event.correlation_id
        )
        if record.payload_hash != sha256_hex(_payload(event)):
            raise ValidationFailed(f"provider event {event.event_id} was delivered before with another payload")
        if record.status in (inbox.APPLIED, inbox.REJECTED):
            if event.sequence is not None:  # a failure between closing it and marking it: finish that now
                inbox.mark_closed(tenant_id, txn_id, event.sequence, event.event_id, record.status)
                self._drain(tenant_id, txn_id)
            return Applied(Outcome.DUPLICATE, record.outcome or "", txn_id, record.status)
        outcome, reason = self._try(tenant_id, event)
        if outcome is Outcome.PARKED:
            inbox.park(record)
            outcome, reason = self._try(tenant_id, event)  # the prerequisite may have landed meanwhile
            if outcome is Outcome.PARKED:
                return Applied(outcome, "", txn_id)
        self._close(tenant_id, record, event, outcome, reason)
        if outcome is not Outcome.REJECTED or event.sequence is not None:
            self._drain(tenant_id, txn_id)
        return Applied(outcome, reason, txn_id)

    def _try(self, tenant_id: str, event: CardEvent) -> tuple[Outcome, str]:
        """Attempt the event, unless its predecessor in the processor's sequence is still open."""
        txn_id = card_txn_id(tenant_id, event)
        if event.sequence is not None and not inbox.sequence_closed(tenant_id, txn_id, event.sequence - 1):
            return Outcome.PARKED, ""
        return self._attempt(tenant_id, event)

    @staticmethod
    def _close(tenant_id: str, record: ProviderEventItem, event: CardEvent, outcome: Outcome, reason: str) -> None:
        status = inbox.REJECTED if outcome is Outcome.REJECTED else inbox.APPLIED
        if event.sequence is not None:  # first the marker: a crash before the inbox closes redoes an idempotent step
            inbox.mark_closed(tenant_id, record.txn_id, event.sequence, event.event_id, status)
        inbox.close(record, status, SHADOW_OUTCOME if outcome is Outcome.RECORDED else reason)

    def _drain(self, tenant_id: str, txn_id: str) -> None:
        """Apply parked events of the transaction until none of them can make progress."""
        progress = True
        while progress:
            progress = False
            for record in inbox.parked_for(tenant_id, txn_id):
                fields = {**record.payload, "kind": CardEventKind(record.payload["kind"])}
                parked = CardEvent(**fields, correlation_id=record.correlation_id or "")
                outcome, reason = self._try(tenant_id, parked)
                if outcome is not Outcome.PARKED:
                    self._close(tenant_id, record, parked, outcome, reason)
                    progress = True

    def _attempt(self, tenant_id: str, event: CardEvent) -> tuple[Outcome, str]:
        caller = Caller(
            tenant_id=tenant_id,
            actor=f"provider:{event.provider}",
            role="system",
            correlation_id=event.correlation_id or f"{event.provider}:{event.event_id}",
        )
        payload = _payload(event)
        request = RequestIdentity(
            idempotency_key=f"{event.provider}:{event.event_id}",
            request_hash=sha256_hex(payload),
            fingerprint={name: sha256_hex(value) for name, value in payload.items()},
        )
        txn_id = card_txn_id(tenant_id, event)
        posted = True
        try:
            if event.kind is CardEventKind.AUTHORIZATION:
                self._authorize(caller, request, txn_id, event)
            elif event.kind is CardEventKind.INCREMENT:
                self._increase(caller, request, txn_id, event)
            elif event.kind is CardEventKind.CAPTURE:
                posted = self._clearing.clear(caller, request, txn_id, _clearing_event(event))
            elif event.kind is CardEventKind.REVERSAL:
                self._lifecycle.void(caller, request, txn_id, amount_minor=event.amount_minor)
            else:
                posted = self._clearing.refund(caller, request, txn_id, _clearing_event(event))
        except NotFound:
            if event.kind is CardEventKind.AUTHORIZATION or event.sequence is not None:
                return _rejected("not_found")  # in sequence, its authorisation was declined (or never came)
            return Outcome.PARKED, ""
        except DomainError as refused:
            if event.sequence is None and event.kind is CardEventKind.REFUND and self._still_open(tenant_id, txn_id):
                return Outcome.PARKED, ""  # the captures it refunds have not all landed yet
            return _rejected(refused.code)
        return (Outcome.APPLIED if posted else Outcome.RECORDED), ""

    def _authorize(self, caller: Caller, request: RequestIdentity, txn_id: str, event: CardEvent) -> None:
        tenant_id = caller.require_tenant()
        if ledger_store.load_transaction(tenant_id, txn_id) is not None:
            return  # authorised before (its inbox record was lost): the ledger holds it, whatever changed since
        gate = self._tenancy.require_capability(tenant_id, Capability.CARD_ISSUING, caller)
        (card_account,) = DIRECTORY.resolve(tenant_id, [event.account_id or ""], event.currency)
        require_user_account(card_account)
        clearing = system_account(tenant_id, CARD_CLEARING, event.currency)
        card_checks = self._card_checks(caller, txn_id, event)
        # An authorisation counts against the cardholder's limits when it is placed (docs/limits-and-geo.md) and is
        # scored by the AML rules like a transfer; it cannot wait for a case (the processor needs an answer now), so
        # a review declines it.
        decision = decide_movement(
            self._checks,
            caller,
            txn_id,
            debit=card_account,
            debit_minor=event.amount_minor,
            aml=Operation.CARD_AUTHORIZATION,
            can_hold=False,
        )
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
            checks=(*card_checks, *decision.checks),
            decision=decision,
        )
        legs = hold_pair(card_account, clearing, event.amount_minor)
        first = first_event(caller, request, txn, EventKind.AUTHORIZED, legs)
        create(caller, request, txn, first, decision=decision, conditions=self._card_conditions(tenant_id, event))

    def _increase(self, caller: Caller, request: RequestIdentity, txn_id: str, event: CardEvent) -> None:
        """An incremental authorisation: gated like an authorisation; the card must still be ACTIVE when it posts."""
        tenant_id = caller.require_tenant()
        self._tenancy.require_capability(tenant_id, Capability.CARD_ISSUING, caller)
        conditions = self._card_conditions(tenant_id, event)
        self._lifecycle.increase(caller, request, txn_id, amount_minor=event.amount_minor, conditions=conditions)

    def _card_checks(self, caller: Caller, txn_id: str, event: CardEvent) -> tuple[dict[str, Any], ...]:
        """The card's status (read: declines early; the posting's condition is the guard) and the merchant's
        country; a refusal is audited like every compliance refusal."""
        tenant_id = caller.require_tenant()
        checks: list[dict[str, Any]] = []
        try:
            if event.card_id is not None:
                card = card_store.find_card(tenant_id, event.card_id)
                if card is None or card.account_id != event.account_id:
                    raise NotFound(f"card {event.card_id} not found for account {event.account_id}")
                checks.append(check_card(card.id, card.status))
            if event.merchant_country is not None:
                checks.append(check_merchant_country(event.merchant_country))
        except DomainError as refused:
            if not isinstance(refused, NotFound):
                audit_refusal(caller, refused, subject_id=txn_id, context={"checks": checks, "card_id": event.card_id})
            raise
        return tuple(checks)

    @staticmethod
    def _card_conditions(tenant_id: str, event: CardEvent) -> tuple[ledger_store.PostingCondition, ...]:
        return () if event.card_id is None else (card_store.active_condition(tenant_id, event.card_id),)

    def _still_open(self, tenant_id: str, txn_id: str) -> bool:
        stored = ledger_store.load_transaction(tenant_id, txn_id)
        return stored is not None and views.txn_state(stored).status is TxnStatus.AUTHORIZED


def card_txn_id(tenant_id: str, event: CardEvent) -> str:
    """Every event of one authorisation lands on the same transaction, whatever order they come in."""
    return derived_id("txn", tenant_id, "card", event.provider, event.authorization_ref)


def _payload(event: CardEvent) -> dict[str, Any]:
    """The event itself (what its hash and its request identity cover): without the delivery's correlation id."""
    return {
        name: (value.value if isinstance(value, StrEnum) else value)
        for name, value in asdict(event).items()
        if name != "correlation_id"
    }


def _clearing_event(event: CardEvent) -> ClearingEvent:
    return ClearingEvent(
        provider=event.provider,
        event_id=event.event_id,
        authorization_ref=event.authorization_ref,
        amount_minor=event.amount_minor,
        currency=event.currency,
        final=event.final,
        card_id=event.card_id,
    )


def _rejected(code: str) -> tuple[Outcome, str]:
    return Outcome.REJECTED, code
