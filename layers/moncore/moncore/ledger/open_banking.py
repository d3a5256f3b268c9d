"""Open banking on the ledger: asynchronous fundings, and the provider's webhooks about collections and payouts
(docs/providers.md). Withdrawals are started in moncore.ledger.withdrawals; their outcome arrives here.

    POST /v1/fundings -> checks (capability, geo, limits, AML) -> provider.collect
        SETTLED in the answer (an instant provider) -> posted at once (LedgerService.fund)
        PENDING -> the transaction is created (header only: CREATED, provider reference, guard, AML event)
    POST /webhooks/<provider> (signed) -> inbox (stored, deduplicated) -> the transaction the event names
        collection.authorized  CREATED -> AUTHORIZED: the amount shows as the user's pending_in
        collection.settled     AUTHORIZED -> SETTLED (a capture), or CREATED -> SETTLED when it overtook authorized
        collection.failed      CREATED | AUTHORIZED -> REVERSED (the hold released; nothing was ever credited)
        payout.settled         AUTHORIZED (submitted) -> SETTLED: the held funds leave for the payout clearing
        payout.failed          AUTHORIZED (submitted) -> REVERSED: the hold released, the funds are back

A funding under AML review (`capture: "review"`) is held for its case: the provider's `authorized` changes
nothing, its `settled` places the hold (AUTHORIZED, pending_in), and only the case decision credits it (released)
or gives it back (reversed); so an officer can never credit money the provider has not settled.

Every step has an op id derived from (provider, provider reference, outcome), so two deliveries of one outcome,
even under different event ids, post once; the sequence slots order concurrent ones (invariant 9). An outcome the
transaction has moved past (authorized after settled, anything after a final state) is IGNORED and says why. The
tenant of an event is never taken from the payload alone: the reference (`<tenant>:<transaction>`) says where to
look, and the event applies only if that transaction was handed to this provider under the provider reference the
event names; else UNMATCHED (404; a redelivery retries). A posting the ledger refuses (a frozen account, a balance
cap) leaves the event RECEIVED and answers the refusal (422): the provider redelivers, or an operator replays it
once the cause is resolved.

Errors: NotFound, ValidationFailed, InvalidSignature, AlreadyExists, ProviderUnavailable, the ledger's refusals.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from moncore.compliance.movements import MovementChecks, MovementDecision
from moncore.domain.audit import AuditEvent, audit_event
from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import DomainError, InvariantViolation, NotFound, ProviderUnavailable
from moncore.domain.ids import derived_id
from moncore.domain.lifecycle import Step, StoredEvent, TxnState, advance, plan_capture, plan_release
from moncore.domain.limits import BalanceCap
from moncore.domain.money import stored_minor
from moncore.domain.settlement import FUNDING_CLEARING
from moncore.domain.transactions import (
    HOLDING_CAPTURES,
    AccountRef,
    Event,
    EventKind,
    Leg,
    Transaction,
    TxnStatus,
    TxnType,
    hold_pair,
    settled_pair,
)
from moncore.ledger import views
from moncore.ledger.directory import DIRECTORY
from moncore.ledger.lifecycle import LifecycleService
from moncore.ledger.lifecycle import Operation as StepOperation
from moncore.ledger.service import aml_records, new_transaction, replay_from_ledger, system_account
from moncore.providers import webhooks
from moncore.providers.open_banking import (
    Kind,
    ProviderEvent,
    Status,
    Submission,
    known_provider,
    open_banking_provider,
    parse_reference,
)
from moncore.store import audit as audit_store
from moncore.store import ledger as ledger_store
from moncore.store import webhooks as inbox
from moncore.store.models import WebhookEventItem
from moncore.tenancy.service import TenancyService

DOMAIN = "open_banking"
_ATTEMPTS = 8  # re-plans after losing a sequence slot to a concurrent delivery


def provider_caller(tenant_id: str, provider: str, correlation_id: str) -> Caller:
    """Who a provider's outcome acts as: the provider itself (the lifecycle lets only it move its holds)."""
    return Caller(tenant_id, f"provider:{provider}", "system", correlation_id)


def outcome_op_id(tenant_id: str, provider: str, provider_ref: str, status: Status) -> str:
    """One op per (provider reference, outcome): redeliveries under any event id post once."""
    return derived_id("op", tenant_id, "open_banking", provider, provider_ref, status.value)


def outcome_request_hash(provider_ref: str, status: Status) -> str:
    """What a provider outcome step is recognised by when applied again (the same for every delivery of it)."""
    return sha256_hex({"provider_ref": provider_ref, "status": status.value})


# -------------------------------------------------------------------- fundings (called by LedgerService.fund)
def create_pending_funding(
    caller: Caller,
    request: RequestIdentity,
    *,
    txn_id: str,
    account: AccountRef,
    amount_minor: int,
    currency: str,
    gate: dict[str, str],
    decision: MovementDecision,
    submitted: Submission,
) -> Result:
    """The funding the provider accepted (PENDING): header only, CREATED, with the provider reference and its guard,
    the AML event (and, under review, the case), the payee's velocity; balances move when the outcome arrives."""
    tenant_id = caller.require_tenant()
    txn = new_transaction(
        caller,
        request,
        txn_id,
        TxnType.FUNDING,
        amount_minor,
        currency,
        gate=gate,
        provider=submitted.provider,
        provider_ref=submitted.provider_ref,
        capture="review" if decision.review else "provider",
        checks=decision.checks,
        decision=decision,
    )
    txn = replace(txn, account_id=account.account_id)
    records, audits = aml_records(caller, txn, decision)
    holds = ((txn, TxnState(txn.type, TxnStatus.CREATED, amount_minor)),) if txn.capture in HOLDING_CAPTURES else ()
    posting = ledger_store.Posting(
        tenant_id=tenant_id,
        audit=_created_audit(caller, txn, account),
        created=(txn,),
        guards=(provider_guard(submitted.provider, submitted.provider_ref),),
        holds=holds,
        velocity=decision.velocity(txn.created_at),
        records=records,
        audits=audits,
    )
    try:
        ledger_store.post(posting)
    except ledger_store.DuplicateTransaction:
        return replay_from_ledger(caller, request, txn_id)
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise InvariantViolation(f"transaction {txn_id} was written but cannot be read back")
    return Result(views.transaction_view(stored))


def provider_guard(provider: str, provider_ref: str) -> str:
    """One transaction per provider reference (invariant 8); what reconciliation matches a statement line to."""
    return f"provider_ref#{provider}#{provider_ref}"


def _created_audit(caller: Caller, txn: Transaction, account: AccountRef) -> AuditEvent:
    return audit_event(
        tenant_id=txn.tenant_id,
        action="funding.created",
        actor=caller.actor,
        correlation_id=caller.correlation_id,
        subject_id=txn.id,
        payload={
            "txn_id": txn.id,
            "type": txn.type.value,
            "status": TxnStatus.CREATED.value,
            "amount_minor": txn.amount_minor,
            "currency": txn.currency,
            "account_id": account.account_id,
            "provider": txn.provider,
            "provider_ref": txn.provider_ref,
            "capture": txn.capture,
        },
    )


# -------------------------------------------------------------------- appending provider-driven events
def append_event(
    caller: Caller,
    stored: ledger_store.StoredTxn,
    *,
    kind: EventKind,
    status: TxnStatus,
    legs: tuple[Leg, ...],
    op_id: str,
    request_hash: str,
    guards: tuple[str, ...] = (),
    caps: tuple[BalanceCap, ...] = (),
    provider_ref: str | None = None,
    reason: str | None = None,
) -> None:
    """Append one event planned by the caller (the lifecycle engine plans captures and voids of a hold; this one
    writes what it cannot: the first event of a transaction created empty, and a submission). Guarded by the op id;
    raises EventSlotTaken (re-read and plan again), DuplicateGuard (done before) or the ledger's refusals."""
    header = stored.header
    state = views.txn_state(stored)
    txn = ledger_store.header_transaction(header)
    event = Event(
        seq=state.next_seq,
        kind=kind,
        status=status,
        amount_minor=txn.amount_minor,
        legs=legs,
        recorded_at=now_rfc3339(),
        op_id=op_id,
        request_hash=request_hash,
        actor=caller.actor,
        correlation_id=caller.correlation_id,
        reason=reason,
        provider_ref=provider_ref,
    )
    after = advance(state, StoredEvent(event.seq, event.kind, event.status, event.amount_minor))
    ledger_store.post(
        ledger_store.Posting(
            tenant_id=txn.tenant_id,
            audit=audit_event(
                tenant_id=txn.tenant_id,
                action=f"{txn.type.value}.{kind.value}",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=txn.id,
                payload={
                    "txn_id": txn.id,
                    "type": txn.type.value,
                    "event": kind.value,
                    "seq": event.seq,
                    "status": status.value,
                    "amount_minor": event.amount_minor,
                    "currency": txn.currency,
                    "provider": txn.provider,
                    "provider_ref": provider_ref or txn.provider_ref,
                    "reason": reason,
                    "legs": [[leg.account.account_id, leg.amount_minor, leg.phase.value] for leg in legs],
                },
            ),
            events=((txn, event),),
            guards=(f"op#{op_id}", *guards),
            holds=((txn, after),) if txn.capture in HOLDING_CAPTURES else (),
            caps=caps,
        )
    )


# -------------------------------------------------------------------- webhooks
class OpenBankingService:
    def __init__(self, tenancy: TenancyService | None = None, lifecycle: LifecycleService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._checks = MovementChecks(self._tenancy)
        self._lifecycle = lifecycle or LifecycleService(self._checks)

    def receive_webhook(
        self, provider: str, raw_body: bytes, signature: str | None, correlation_id: str, *, now_s: int | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One delivery to /webhooks/{provider}: (HTTP status, body). Refusals raise (module docstring)."""
        delivery = webhooks.Delivery(DOMAIN, provider, raw_body, signature, correlation_id)
        received = webhooks.receive(
            delivery,
            known_provider=known_provider,
            event_id_of=lambda payload: open_banking_provider(provider).parse_event(payload).event_id,
            now_s=now_s,
        )
        answer: dict[str, Any] = {"event_id": received.item.event_id, "provider": provider}
        if received.settled:
            return 200, answer | {"status": "duplicate", "first_outcome": received.item.status.lower()}
        event = open_banking_provider(provider).parse_event(received.payload)
        stored = self._match(received.item, event, provider)
        caller = provider_caller(stored.header.tenant_id, provider, correlation_id)
        try:
            applied, outcome = self._apply(caller, stored, event, provider)
        except DomainError as refused:
            # Money the ledger cannot take yet (a frozen account, a balance cap): kept RECEIVED, answered with the
            # refusal; a redelivery or an operator replay applies it once the cause is resolved.
            audit_store.append(
                audit_event(
                    tenant_id=stored.header.tenant_id,
                    action="provider_event.refused",
                    actor=caller.actor,
                    correlation_id=correlation_id,
                    subject_id=stored.header.txn_id,
                    payload={
                        "event_id": event.event_id,
                        "status": event.status.value,
                        "code": refused.code,
                        "detail": refused.detail,
                    },
                )
            )
            raise
        final = views.transaction_view(_load(stored.header.tenant_id, stored.header.txn_id))
        outcome |= {"txn_id": final["id"], "transaction_status": final["status"]}
        inbox.settle(
            received.item,
            inbox.PROCESSED if applied else inbox.IGNORED,
            now_rfc3339(),
            reason=None if applied else str(outcome.get("reason")),
            tenant_id=stored.header.tenant_id,
            subject_id=stored.header.txn_id,
            outcome=outcome,
        )
        return 200, answer | {"status": "processed" if applied else "ignored", **outcome}

    def _match(self, record: WebhookEventItem, event: ProviderEvent, provider: str) -> ledger_store.StoredTxn:
        found = parse_reference(event.reference)
        stored = ledger_store.load_transaction(*found) if found is not None else None
        wanted = TxnType.FUNDING if event.kind is Kind.COLLECTION else TxnType.WITHDRAWAL
        matched = (
            stored is not None
            and stored.header.type == wanted.value
            and stored.header.provider == provider
            and (stored.header.provider_ref if wanted is TxnType.FUNDING else views.submitted_ref(stored))
            == event.provider_ref
        )
        if stored is None or not matched:
            reason = "no transaction matches this event's reference and provider reference"
            inbox.settle(record, inbox.UNMATCHED, now_rfc3339(), reason=reason)
            raise NotFound(f"{reason}: stored; redeliver it later if the payment was only just submitted")
        header = stored.header
        if stored_minor(header.amount_minor) != event.amount_minor or header.currency != event.currency:
            reason = (
                f"the event reports {event.amount_minor} {event.currency}, the transaction is "
                f"{stored_minor(header.amount_minor)} {header.currency}: left for reconciliation"
            )
            inbox.settle(
                record,
                inbox.IGNORED,
                now_rfc3339(),
                reason=reason,
                tenant_id=header.tenant_id,
                subject_id=header.txn_id,
            )
            audit_store.append(
                audit_event(
                    tenant_id=header.tenant_id,
                    action="provider_event.mismatch",
                    actor=f"provider:{provider}",
                    correlation_id=record.correlation_id or "",
                    subject_id=header.txn_id,
                    payload={"event_id": event.event_id, "reason": reason},
                )
            )
            raise _Mismatch(reason)
        return stored

    def _apply(
        self, caller: Caller, stored: ledger_store.StoredTxn, event: ProviderEvent, provider: str
    ) -> tuple[bool, dict[str, Any]]:
        """Apply the outcome to the transaction once: (applied, outcome). Re-plans when a concurrent delivery took
        the next sequence slot first."""
        tenant_id, txn_id = stored.header.tenant_id, stored.header.txn_id
        op_id = outcome_op_id(tenant_id, provider, event.provider_ref, event.status)
        for _ in range(_ATTEMPTS):
            if any(e.op_id == op_id for e in stored.events):
                return False, {"reason": f"{event.status.value.lower()} was applied before (another delivery)"}
            try:
                return self._step(caller, stored, event, op_id)
            except ledger_store.EventSlotTaken:
                stored = _load(tenant_id, txn_id)
            except ledger_store.DuplicateGuard:
                return False, {"reason": f"{event.status.value.lower()} was applied before (another delivery)"}
        raise ProviderUnavailable("the transaction is busy; nothing was posted, redeliver the event")

    def _step(
        self, caller: Caller, stored: ledger_store.StoredTxn, event: ProviderEvent, op_id: str
    ) -> tuple[bool, dict[str, Any]]:
        header = stored.header
        state = views.txn_state(stored).status
        review = header.capture == "review"
        request_hash = outcome_request_hash(event.provider_ref, event.status)
        operation = StepOperation(caller, op_id, request_hash, event.reason)
        append = partial(append_event, caller, stored, op_id=op_id, request_hash=request_hash)  # this outcome's step

        def applied(what: str) -> tuple[bool, dict[str, Any]]:
            return True, {"applied": what}

        def ignored(reason: str) -> tuple[bool, dict[str, Any]]:
            return False, {"reason": reason}

        if state in (TxnStatus.SETTLED, TxnStatus.REVERSED):
            return ignored(f"the transaction is already {state.value}: a late {event.status.value.lower()}")
        if event.kind is Kind.PAYOUT:  # a submitted withdrawal: AUTHORIZED (its hold) until the outcome
            if event.status is Status.SETTLED:
                self._lifecycle.step(operation, header.txn_id, capture_step)
                return applied("captured")
            self._lifecycle.step(operation, header.txn_id, void_step)
            return applied("voided")
        clearing, user = self._funding_accounts(stored)
        amount = stored_minor(header.amount_minor)
        if event.status is Status.AUTHORIZED:
            if state is not TxnStatus.CREATED or review:
                why = "held for its case until the provider settles" if review else "a late authorization"
                return ignored(f"the transaction is {state.value}: {why}")
            append(
                kind=EventKind.AUTHORIZED,
                status=TxnStatus.AUTHORIZED,
                legs=hold_pair(clearing, user, amount),
            )
            return applied("authorized")
        if event.status is Status.SETTLED:
            if state is TxnStatus.AUTHORIZED:
                if review:
                    return ignored("the settled funds are already held for the case")
                self._lifecycle.step(operation, header.txn_id, capture_step)
                return applied("captured")
            if review:  # settled at the provider: now held for the case decision, never credited before it
                append(
                    kind=EventKind.AUTHORIZED,
                    status=TxnStatus.AUTHORIZED,
                    legs=hold_pair(clearing, user, amount),
                )
                return applied("held for review")
            decision = self._checks.decide(caller, subject_id=header.txn_id, credit=user, credit_minor=amount)
            append(
                kind=EventKind.SETTLED,
                status=TxnStatus.SETTLED,
                legs=settled_pair(clearing, user, amount),
                caps=decision.caps,
            )
            return applied("settled")
        # FAILED
        if state is TxnStatus.AUTHORIZED:
            if review:
                return ignored("the provider reported a failure after it settled: left for reconciliation")
            self._lifecycle.step(operation, header.txn_id, void_step)
            return applied("voided")
        append(
            kind=EventKind.VOIDED,
            status=TxnStatus.REVERSED,
            legs=(),
            reason=event.reason or "the provider reported a failure",
        )
        return applied("reversed")

    @staticmethod
    def _funding_accounts(stored: ledger_store.StoredTxn) -> tuple[AccountRef, AccountRef]:
        """(funding clearing, user account) of an asynchronous funding: the header names the account."""
        header = stored.header
        if not header.account_id:
            raise InvariantViolation(f"funding {header.txn_id} does not name its account")
        (user,) = DIRECTORY.resolve(header.tenant_id, [header.account_id], header.currency or "")
        return system_account(header.tenant_id, FUNDING_CLEARING, header.currency or ""), user


class _Mismatch(DomainError):
    code = "provider_event_mismatch"
    status = 422
    title = "Provider Event Mismatch"


def capture_step(state: TxnState) -> Step:
    """The provider settled: the whole hold becomes posted money."""
    return plan_capture(state, None)


def void_step(state: TxnState) -> Step:
    """The provider failed: the whole hold goes back."""
    return plan_release(state, None, EventKind.VOIDED)


def _load(tenant_id: str, txn_id: str) -> ledger_store.StoredTxn:
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise NotFound(f"transaction {txn_id} not found")
    return stored
