"""Lifecycle steps on existing transactions: capture, void, expiry of holds, and reversal of SETTLED transactions.

Each step reads the transaction (consistent), folds its events into the current state, plans the next event with the
pure rules of moncore.domain.lifecycle, and appends it in the next sequence slot in one atomic write with its legs,
the balance updates, the derived hold row and the audit event. A concurrent step that took the slot first makes this
one re-read and plan again, so each step happens at most once and never on a stale state (invariant 9).

Exactly once: every step carries an op id derived from (tenant, idempotency key) and guarded in the Guards table; a
repeated request finds its own event and answers it as a replay, another request reusing the key gets a 409.

Errors: NotFound, InvalidStateTransition, ValidationFailed, InsufficientFunds (a reversal debits the payee),
AccountNotActive, IdempotencyKeyReused, ConcurrencyConflict (retryable).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from moncore.compliance.movements import MovementChecks
from moncore.compliance.refusals import audit_refusal
from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import (
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidStateTransition,
    InvariantViolation,
    LimitExceeded,
    NotFound,
    ValidationFailed,
)
from moncore.domain.ids import derived_id
from moncore.domain.lifecycle import (
    Step,
    StoredEvent,
    TxnState,
    advance,
    plan_capture,
    plan_increase,
    plan_release,
    plan_reversal,
)
from moncore.domain.limits import BalanceCap, CounterCharge
from moncore.domain.money import check_amount_minor, stored_minor
from moncore.domain.transactions import (
    HOLDING_CAPTURES,
    AccountRef,
    Event,
    EventKind,
    Leg,
    Phase,
    Transaction,
    TxnStatus,
    TxnType,
    check_zero_sum,
    hold_pair,
    release_pair,
    settled_pair,
)
from moncore.ledger import views
from moncore.ledger.directory import DIRECTORY
from moncore.ledger.service import new_transaction, posting_audit, replay_from_ledger
from moncore.store import ledger as ledger_store
from moncore.store.models import GuardItem, LedgerItem, plain_map, tenant_key

_STEP_ATTEMPTS = 8  # re-reads after losing the sequence slot to a concurrent step
SWEEP_ACTOR = "system:hold-expiry"


@dataclass(frozen=True, slots=True)
class Operation:
    """Who asks for a step and how it is recognised when asked again."""

    caller: Caller
    op_id: str
    request_hash: str
    reason: str | None = None

    @classmethod
    def of_request(cls, caller: Caller, request: RequestIdentity, reason: str | None = None) -> Operation:
        op_id = derived_id("op", caller.require_tenant(), request.idempotency_key)
        return cls(caller, op_id, request.request_hash, reason)


class LifecycleService:
    def __init__(self, checks: MovementChecks | None = None) -> None:
        self._checks = checks or MovementChecks()

    # ---------------------------------------------------------------- partner API
    def capture(self, caller: Caller, request: RequestIdentity, txn_id: str, *, amount_minor: int | None) -> Result:
        """Settle all (default) or part of the remaining hold; repeated captures up to the held amount."""
        if amount_minor is not None:
            check_amount_minor(amount_minor)
        return self.step(Operation.of_request(caller, request), txn_id, lambda state: plan_capture(state, amount_minor))

    def increase(
        self,
        caller: Caller,
        request: RequestIdentity,
        txn_id: str,
        *,
        amount_minor: int,
        conditions: tuple[ledger_store.PostingCondition, ...] = (),
    ) -> Result:
        """Hold `amount_minor` more on an open hold (a card's incremental authorisation). The increase counts
        against the payer's tier limits like a new hold and needs the payer active; `conditions` are checked with
        the posting (the card is still ACTIVE)."""
        check_amount_minor(amount_minor)
        operation = Operation.of_request(caller, request)
        return self.step(operation, txn_id, lambda state: plan_increase(state, amount_minor), conditions=conditions)

    def void(self, caller: Caller, request: RequestIdentity, txn_id: str, *, amount_minor: int | None = None) -> Result:
        """Release the rest of the hold (or `amount_minor` of it): REVERSED if nothing was captured, else SETTLED."""
        if amount_minor is not None:
            check_amount_minor(amount_minor)
        operation = Operation.of_request(caller, request)
        return self.step(operation, txn_id, lambda state: plan_release(state, amount_minor, EventKind.VOIDED))

    def reverse(
        self, caller: Caller, request: RequestIdentity, txn_id: str, *, amount_minor: int | None, reason: str
    ) -> Result:
        """Correct a SETTLED transaction with a new REVERSAL transaction linked both ways (all or part of it)."""
        tenant_id = caller.require_tenant()
        if amount_minor is not None:
            check_amount_minor(amount_minor)
        reversal_id = derived_id("txn", tenant_id, request.idempotency_key)
        for _ in range(_STEP_ATTEMPTS):
            original = _load(tenant_id, txn_id)
            state = views.txn_state(original)
            try:
                step = plan_reversal(state, amount_minor)
                legs = _reversal_legs(tenant_id, original, state, step.amount_minor)
            except (InvalidStateTransition, ValidationFailed):
                if ledger_store.load_transaction(tenant_id, reversal_id) is None:
                    raise
                break  # this key's reversal was posted before (the original changed since): replay it, or 409
            header = original.header
            reversal = new_transaction(
                caller,
                request,
                reversal_id,
                TxnType.REVERSAL,
                step.amount_minor,
                header.currency or "",
                gate={"capability": "reversal", "of": txn_id},
                reference=reason,
                reverses_txn_id=txn_id,
            )
            reversal_event = Event(
                seq=1,
                kind=EventKind.SETTLED,
                status=TxnStatus.SETTLED,
                amount_minor=step.amount_minor,
                legs=legs,
                recorded_at=reversal.created_at,
                op_id=reversal_id,
                request_hash=request.request_hash,
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                reason=reason,
                related_txn_id=txn_id,
            )
            link = _event(Operation(caller, reversal_id, request.request_hash, reason), state, step, (), reversal_id)
            posting = ledger_store.Posting(
                tenant_id=tenant_id,
                audit=posting_audit(caller, reversal, reversal_event, action="reversal.settled"),
                created=(reversal,),
                events=((reversal, reversal_event), (ledger_store.header_transaction(original.header), link)),
            )
            try:
                ledger_store.post(posting)
            except ledger_store.EventSlotTaken:
                continue
            except ledger_store.DuplicateTransaction:
                break
            return Result(views.transaction_view(_load(tenant_id, reversal_id)))
        else:
            raise ConcurrencyConflict("the transaction is busy; nothing was posted, retry with the same key")
        return replay_from_ledger(caller, request, reversal_id)

    # ---------------------------------------------------------------- scheduled
    def expire_due_holds(self, tenant_id: str, *, now: str | None = None, limit: int = 100) -> list[str]:
        """Release every open hold of the tenant whose expiry has passed (the scheduled sweep). Returns the ids of
        the transactions it released; a hold captured or voided meanwhile is left alone."""
        moment = now or now_rfc3339()
        released: list[str] = []
        for hold in ledger_store.due_holds(tenant_id, moment, limit=limit):
            caller = Caller(tenant_id=tenant_id, actor=SWEEP_ACTOR, role="system", correlation_id=f"sweep-{moment}")
            op_id = derived_id("op", tenant_id, "expire", hold.txn_id)
            operation = Operation(caller, op_id, sha256_hex({"expire": hold.txn_id}), reason="hold expired")
            try:
                result = self.step(operation, hold.txn_id, lambda state: plan_release(state, None, EventKind.EXPIRED))
            except InvalidStateTransition:
                continue  # closed by a capture or void since the index was read
            if not result.replayed:
                released.append(hold.txn_id)
        return released

    # ---------------------------------------------------------------- the step engine
    def step(
        self,
        operation: Operation,
        txn_id: str,
        plan: Callable[[TxnState], Step],
        *,
        conditions: tuple[ledger_store.PostingCondition, ...] = (),
    ) -> Result:
        """Plan and append one event on `txn_id`, once per operation, re-planning if a concurrent step got there
        first."""
        tenant_id = operation.caller.require_tenant()
        for _ in range(_STEP_ATTEMPTS):
            stored = _load(tenant_id, txn_id)
            done = next((e for e in stored.events if e.op_id == operation.op_id), None)
            if done is not None:
                return _replay(stored, done, operation)
            state = views.txn_state(stored)
            _require_not_under_review(stored, operation.caller, state)
            step = plan(state)
            if step.kind is EventKind.EXPIRED and (stored.header.hold_expires_at or "~") > now_rfc3339():
                raise InvalidStateTransition("the hold has not expired yet")
            event = _event(operation, state, step, _step_legs(tenant_id, stored, step))
            txn = posting_transaction(stored)
            after = advance(state, _as_stored(event))
            # A capture credits the payee: its tier's balance cap applies (holds count for the payer when placed).
            caps: tuple[BalanceCap, ...] = ()
            counters: tuple[CounterCharge, ...] = ()
            if step.kind is EventKind.CAPTURED:
                payee = hold_accounts(tenant_id, stored)[1]
                decision = self._checks.decide(
                    operation.caller, subject_id=txn_id, credit=payee, credit_minor=step.amount_minor
                )
                caps = decision.caps
            elif step.kind is EventKind.INCREASED:  # more is held: it counts for the payer like a new hold
                payer = hold_accounts(tenant_id, stored)[0]
                decision = self._checks.decide(
                    operation.caller, subject_id=txn_id, debit=payer, debit_minor=step.amount_minor, capped=False
                )
                counters = decision.counters(event.recorded_at)
            posting = ledger_store.Posting(
                tenant_id=tenant_id,
                audit=posting_audit(operation.caller, txn, event, action=f"{txn.type.value}.{event.kind.value}"),
                events=((txn, event),),
                guards=(f"op#{operation.op_id}",),
                holds=((txn, after),) if txn.capture in HOLDING_CAPTURES else (),
                require_active=step.kind in (EventKind.CAPTURED, EventKind.INCREASED),
                caps=caps,
                counters=counters,
                conditions=conditions,
            )
            try:
                ledger_store.post(posting)
            except ledger_store.EventSlotTaken:
                continue
            except LimitExceeded as refused:
                audit_refusal(operation.caller, refused, subject_id=txn_id, context={"event": step.kind.value})
                raise
            except ledger_store.DuplicateGuard:
                if _guard_owner(tenant_id, operation.op_id) != txn_id:
                    raise IdempotencyKeyReused(
                        "Idempotency-Key was already used for another transaction",
                        errors=[{"loc": ["path"], "msg": "differs from the original request"}],
                    ) from None
                continue  # our own earlier attempt: the re-read finds the event and replays it
            return Result(views.transaction_view(_load(tenant_id, txn_id)))
        raise ConcurrencyConflict("the transaction is busy; nothing was posted, retry with the same key")


# -------------------------------------------------------------------- helpers
def posting_transaction(stored: ledger_store.StoredTxn) -> Transaction:
    """The stored header as the Transaction a step posts under. Its provider reference goes on every leg, where
    reconciliation matches statement lines: a withdrawal's header is written before the provider is called, so its
    legs take the reference of its submission (moncore.ledger.withdrawals)."""
    txn = ledger_store.header_transaction(stored.header)
    if txn.provider_ref is None and (submitted := views.submitted_ref(stored)) is not None:
        txn = replace(txn, provider_ref=submitted)
    return txn


def _load(tenant_id: str, txn_id: str) -> ledger_store.StoredTxn:
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise NotFound(f"transaction {txn_id} not found")
    return stored


def _require_not_under_review(stored: ledger_store.StoredTxn, caller: Caller, state: TxnState) -> None:
    """Funds held by an AML review move only by the decision of its case (compliance/cases.py, as an officer):
    a partner can neither capture nor void them (docs/aml.md). Funds held for a provider move only by it."""
    if stored.header.capture == "review" and state.status is TxnStatus.AUTHORIZED and caller.role == "tenant":
        case_id = plain_map(stored.header.compliance).get("case_id")
        raise InvalidStateTransition(
            f"transaction {stored.header.txn_id} is held for compliance review; case {case_id} decides it"
        )
    # A hold handed to a provider (an asynchronous funding, a withdrawal) moves only by that provider's outcome
    # (its webhooks act as `provider:<name>`): a void while the provider pays out would give the money back twice.
    header = stored.header
    by_provider = caller.actor == f"provider:{header.provider}"
    submitted = any(e.event == EventKind.SUBMITTED.value for e in stored.events)
    held_for_provider = submitted or (header.capture == "provider" and caller.role == "tenant")
    if state.status is TxnStatus.AUTHORIZED and not by_provider and held_for_provider:
        raise InvalidStateTransition(
            f"transaction {header.txn_id} waits for its provider {header.provider}; only its outcome moves it"
        )


def _replay(stored: ledger_store.StoredTxn, done: LedgerItem, operation: Operation) -> Result:
    if done.request_hash != operation.request_hash:
        raise IdempotencyKeyReused(
            "Idempotency-Key was used with a different request on this transaction",
            errors=[{"loc": ["body"], "msg": "differs from the original request"}],
        )
    return Result(views.transaction_view(stored), replayed=True)


def _guard_owner(tenant_id: str, op_id: str) -> str | None:
    try:
        return GuardItem.get(tenant_key(tenant_id, f"op#{op_id}"), consistent_read=True).owner_id
    except GuardItem.DoesNotExist:
        return None


def _event(
    operation: Operation, state: TxnState, step: Step, legs: tuple[Leg, ...], related_txn_id: str | None = None
) -> Event:
    return Event(
        seq=state.next_seq,
        kind=step.kind,
        status=step.status,
        amount_minor=step.amount_minor,
        legs=legs,
        recorded_at=now_rfc3339(),
        op_id=operation.op_id,
        request_hash=operation.request_hash,
        actor=operation.caller.actor,
        correlation_id=operation.caller.correlation_id,
        reason=operation.reason,
        related_txn_id=related_txn_id,
    )


def _as_stored(event: Event) -> StoredEvent:
    return StoredEvent(event.seq, event.kind, event.status, event.amount_minor, event.related_txn_id)


def hold_accounts(tenant_id: str, stored: ledger_store.StoredTxn) -> tuple[AccountRef, AccountRef]:
    """(payer, payee) of the hold placed by the first (AUTHORIZED) event; increases repeat the same pair."""
    placed = [leg for leg in stored.legs if leg.phase == Phase.AUTHORIZED.value and stored_minor(leg.seq) == 1]
    debit = next((leg for leg in placed if stored_minor(leg.leg_amount_minor) < 0), None)
    credit = next((leg for leg in placed if stored_minor(leg.leg_amount_minor) > 0), None)
    if debit is None or credit is None or len(placed) != 2:
        raise InvariantViolation(f"transaction {stored.header.txn_id} has no two-leg hold")
    payer, payee = DIRECTORY.resolve(
        tenant_id, [debit.account_id or "", credit.account_id or ""], stored.header.currency or ""
    )
    return payer, payee


def _step_legs(tenant_id: str, stored: ledger_store.StoredTxn, step: Step) -> tuple[Leg, ...]:
    payer, payee = hold_accounts(tenant_id, stored)
    if step.kind is EventKind.CAPTURED:
        legs = release_pair(payer, payee, step.amount_minor) + settled_pair(payer, payee, step.amount_minor)
    elif step.kind is EventKind.INCREASED:
        legs = hold_pair(payer, payee, step.amount_minor)
    elif step.kind in (EventKind.VOIDED, EventKind.EXPIRED):
        legs = release_pair(payer, payee, step.amount_minor)
    else:
        raise InvariantViolation(f"{step.kind} has no legs of its own")
    check_zero_sum(legs)
    return legs


def _reversal_legs(
    tenant_id: str, original: ledger_store.StoredTxn, state: TxnState, amount_minor: int
) -> tuple[Leg, ...]:
    """The original's settled movement, backwards: all of it (any number of legs and currencies), or part of it
    when it moved one currency between two accounts."""
    net: dict[str, int] = defaultdict(int)
    currency_of: dict[str, str] = {}
    for leg in original.legs:
        if leg.phase == Phase.SETTLED.value:
            net[leg.account_id or ""] += stored_minor(leg.leg_amount_minor)
            currency_of[leg.account_id or ""] = leg.currency or ""
    moved = {account_id: amount for account_id, amount in net.items() if amount != 0}
    whole = amount_minor == state.captured_minor and state.reversed_minor == 0
    if not whole and (len(moved) != 2 or len(set(currency_of.values())) != 1):
        raise ValidationFailed(
            "only a whole reversal is possible for a transaction that moved more than one currency or account pair",
            errors=[{"loc": ["body", "amount_minor"], "msg": f"must be {state.captured_minor}"}],
        )
    legs: list[Leg] = []
    for account_id, amount in sorted(moved.items()):
        (ref,) = DIRECTORY.resolve(tenant_id, [account_id], currency_of[account_id])
        sign = 1 if amount > 0 else -1
        legs.append(Leg(ref, -amount if whole else -sign * amount_minor, Phase.SETTLED, fx=_reversed_fx(original)))
    result = tuple(legs)
    check_zero_sum(result)
    return result


def _reversed_fx(original: ledger_store.StoredTxn) -> dict[str, Any] | None:
    fx = original.header.fx
    return {"reverses": original.header.txn_id, **fx} if fx else None
