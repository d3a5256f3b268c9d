"""Adjustments of reconciliation exceptions (docs/reconciliation.md "Exceptions and adjustments").

An operator or admin proposes an adjustment for an OPEN exception of a COMPLETED run; ANOTHER admin approves it
(four-eyes: the proposer approving is 403 `four_eyes_required`, as for capability requests); the approval posts one
ledger transaction of type `adjustment` that books the exception's difference between the safeguarding mirror and the
reconciliation suspense account (moncore.domain.reconciliation_runs.adjustment_purposes), linked both ways: the
transaction's reference is the exception id, the exception and the adjustment record the transaction id.

Every change is the next version of append-only records (moncore.store.reconciliations):
- propose: adjustment v1 `proposed` + the exception's next version `adjustment_proposed` + audit event, one write;
- reject (any manager, nothing posts): adjustment `rejected` + the exception `open` again + audit event, one write;
- approve: the ledger posting (header, event, legs, balances, guard `reconciliation_adjustment#<exception id>`), the
  adjustment's `approved` version, the exception's `resolved` version and the approval's audit event are ONE
  TransactWriteItems (the posting's records), so the books, the exception and its adjustment never disagree.

Idempotent: the transaction id derives from the adjustment id and the guard from the exception, so an approval
retried, repeated or raced by a second approver posts once; the same approver approving again is answered the
approval. Errors: NotFound, FourEyesRequired, InvalidStateTransition, ValidationFailed (nothing to adjust).
An exception whose adjustment was rejected may be proposed again (a new adjustment id).
"""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import FourEyesRequired, InvalidStateTransition, InvariantViolation, NotFound
from moncore.domain.ids import derived_id, new_id
from moncore.domain.reconciliation_runs import (
    AdjustmentStatus,
    ExceptionStatus,
    RunStatus,
    adjustable,
    adjustment_purposes,
)
from moncore.domain.transactions import EventKind, TxnType, settled_pair
from moncore.ledger.service import first_event, new_transaction, posting_audit, system_account
from moncore.store import ledger as ledger_store
from moncore.store import reconciliations as store
from moncore.store.models import ReconciliationItem

PROPOSED = AdjustmentStatus.PROPOSED.value
GATE = "reconciliation_adjustment"  # recorded as the posting's gating decision: four-eyes approval, not a capability


class AdjustmentService:
    def propose(self, caller: Caller, run_id: str, exception_id: str, *, reason: str) -> Result:
        """Propose booking an open exception's difference; the exception becomes adjustment_proposed."""
        run = _completed_run(run_id)
        current = _exception(run, exception_id)
        if current.status != ExceptionStatus.OPEN:
            raise InvalidStateTransition(f"exception {exception_id} is {current.status}")
        difference = adjustable(current.document)
        debited, credited = adjustment_purposes(difference)
        adjustment_id = new_id("adj")
        now = now_rfc3339()
        adjustment = {
            "id": adjustment_id,
            "run_id": run_id,
            "exception_id": exception_id,
            "tenant_id": run["tenant_id"],
            "provider": run["provider"],
            "currency": current.document["currency"],
            "difference_minor": difference,
            "amount_minor": abs(difference),
            "debit_purpose": debited,
            "credit_purpose": credited,
            "reason": reason,
            "proposed_by": caller.actor,
            "proposed_at": now,
            "approved_by": None,
            "approved_at": None,
            "txn_id": None,
        }
        exception = {**current.document, "adjustment_id": adjustment_id}
        audit = audit_event(
            tenant_id=run["tenant_id"],
            action="reconciliation.adjustment_proposed",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=exception_id,
            payload=adjustment,
        )
        try:
            store.append(
                _item(run_id, store.adjustment_prefix(adjustment_id), 1, adjustment, PROPOSED, now, caller.actor),
                _next(current, exception, ExceptionStatus.ADJUSTMENT_PROPOSED, now, caller.actor),
                audits=(audit,),
            )
        except store.VersionTaken:
            raise InvalidStateTransition(f"exception {exception_id} changed meanwhile; read it again") from None
        return Result(adjustment_view(adjustment, AdjustmentStatus.PROPOSED.value))

    def approve(self, caller: Caller, run_id: str, adjustment_id: str) -> dict[str, Any]:
        """Post the adjustment (another admin than its proposer); answers it with the transaction id."""
        found = _adjustment(run_id, adjustment_id)
        adjustment = dict(found.document)
        if found.status == AdjustmentStatus.APPROVED:
            if adjustment["approved_by"] == caller.actor:
                return adjustment_view(adjustment, found.status)  # a retry of our own approval
            raise InvalidStateTransition(f"adjustment {adjustment_id} was approved by {adjustment['approved_by']}")
        if adjustment["proposed_by"] == caller.actor:
            raise FourEyesRequired("an adjustment must be approved by another admin than the one who proposed it")
        run = _completed_run(run_id)
        current = _exception(run, adjustment["exception_id"])
        if current.status != ExceptionStatus.ADJUSTMENT_PROPOSED or current.document["adjustment_id"] != adjustment_id:
            raise InvalidStateTransition(f"exception {adjustment['exception_id']} is {current.status}")
        tenant_caller = Caller(run["tenant_id"], caller.actor, caller.role, caller.correlation_id)
        proposal = {k: adjustment[k] for k in ("id", "exception_id", "difference_minor", "currency", "proposed_by")}
        request = RequestIdentity(f"reconciliation-adjustment:{adjustment_id}", sha256_hex(proposal), {})
        txn_id = derived_id("txn", run["tenant_id"], request.idempotency_key)
        currency, amount = adjustment["currency"], int(adjustment["amount_minor"])
        debit = system_account(run["tenant_id"], adjustment["debit_purpose"], currency)
        credit = system_account(run["tenant_id"], adjustment["credit_purpose"], currency)
        gate = {"capability": GATE, "mode": "four_eyes", "proposed_by": adjustment["proposed_by"]}
        gate["approved_by"] = caller.actor
        txn = new_transaction(
            tenant_caller,
            request,
            txn_id,
            TxnType.ADJUSTMENT,
            amount,
            currency,
            gate=gate,
            reference=adjustment["exception_id"],
            provider=run["provider"],
        )
        event = first_event(tenant_caller, request, txn, EventKind.SETTLED, settled_pair(debit, credit, amount))
        now = now_rfc3339()
        approved = {**adjustment, "approved_by": caller.actor, "approved_at": now, "txn_id": txn_id}
        resolved = {**current.document, "txn_id": txn_id}
        approval = audit_event(
            tenant_id=run["tenant_id"],
            action="reconciliation.adjustment_approved",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=adjustment["exception_id"],
            payload=approved,
        )
        posting = ledger_store.Posting(
            tenant_id=run["tenant_id"],
            audit=posting_audit(tenant_caller, txn, event, action="adjustment.settled"),
            created=(txn,),
            events=((txn, event),),
            guards=(f"reconciliation_adjustment#{adjustment['exception_id']}",),
            records=(
                _next(found, approved, AdjustmentStatus.APPROVED, now, caller.actor),
                _next(current, resolved, ExceptionStatus.RESOLVED, now, caller.actor),
            ),
            audits=(approval,),
        )
        try:
            ledger_store.post(posting)
        except (ledger_store.DuplicateTransaction, ledger_store.DuplicateGuard):
            # Approved meanwhile (by this or another admin): the records were written with that posting.
            again = _adjustment(run_id, adjustment_id)
            if again.status != AdjustmentStatus.APPROVED or again.document["approved_by"] != caller.actor:
                raise InvalidStateTransition(f"adjustment {adjustment_id} was decided meanwhile") from None
            return adjustment_view(dict(again.document), again.status)
        except InvariantViolation:
            # The posting names no failed item of its own: only its records' version slots can have been taken, by a
            # decision (a rejection) written meanwhile. Anything else stays the invariant violation it is.
            if _adjustment(run_id, adjustment_id).status == AdjustmentStatus.PROPOSED:
                raise
            raise InvalidStateTransition(f"adjustment {adjustment_id} was decided meanwhile") from None
        return adjustment_view(approved, AdjustmentStatus.APPROVED.value)

    def reject(self, caller: Caller, run_id: str, adjustment_id: str, *, reason: str | None) -> dict[str, Any]:
        """Withdraw a proposed adjustment (no second admin needed: nothing posts); its exception is open again."""
        found = _adjustment(run_id, adjustment_id)
        adjustment = dict(found.document)
        if found.status == AdjustmentStatus.REJECTED and adjustment.get("rejected_by") == caller.actor:
            return adjustment_view(adjustment, found.status)
        if found.status != AdjustmentStatus.PROPOSED:
            raise InvalidStateTransition(f"adjustment {adjustment_id} is {found.status}")
        run = _completed_run(run_id)
        current = _exception(run, adjustment["exception_id"])
        now = now_rfc3339()
        rejected = {**adjustment, "rejected_by": caller.actor, "rejected_at": now, "rejection_reason": reason}
        reopened = {**current.document, "adjustment_id": None}
        audit = audit_event(
            tenant_id=run["tenant_id"],
            action="reconciliation.adjustment_rejected",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=adjustment["exception_id"],
            payload=rejected,
        )
        try:
            store.append(
                _next(found, rejected, AdjustmentStatus.REJECTED, now, caller.actor),
                _next(current, reopened, ExceptionStatus.OPEN, now, caller.actor),
                audits=(audit,),
            )
        except store.VersionTaken:
            raise InvalidStateTransition(f"adjustment {adjustment_id} was decided meanwhile") from None
        return adjustment_view(rejected, AdjustmentStatus.REJECTED.value)


def adjustment_view(adjustment: dict[str, Any], status: str | None) -> dict[str, Any]:
    return {**adjustment, "status": status}


def _completed_run(run_id: str) -> dict[str, Any]:
    item = store.latest_run(run_id)
    if item is None:
        raise NotFound(f"reconciliation {run_id} not found")
    if item.status != RunStatus.COMPLETED:
        raise InvalidStateTransition(f"reconciliation {run_id} is {item.status}: only a completed run is adjusted")
    return dict(item.document)


def _exception(run: dict[str, Any], exception_id: str) -> ReconciliationItem:
    item = store.latest(run["id"], store.exception_prefix(int(run["attempt"]), exception_id))
    if item is None:
        raise NotFound(f"exception {exception_id} not found in reconciliation {run['id']}")
    return item


def _adjustment(run_id: str, adjustment_id: str) -> ReconciliationItem:
    item = store.latest(run_id, store.adjustment_prefix(adjustment_id))
    if item is None:
        raise NotFound(f"adjustment {adjustment_id} not found in reconciliation {run_id}")
    return item


def _item(
    pk: str, prefix: str, version: int, document: dict[str, Any], status: str, at: str, actor: str
) -> ReconciliationItem:
    """A version of an adjustment or exception, written by `actor` (the admin whose change it records)."""
    return ReconciliationItem(
        pk,
        store.versioned_sk(prefix, version),
        tenant_id=document["tenant_id"],
        kind="adjustment" if prefix.startswith(store.ADJUSTMENT) else "exception",
        version=version,
        status=status,
        document=document,
        recorded_at=at,
        actor=actor,
    )


def _next(
    current: ReconciliationItem, document: dict[str, Any], status: str, at: str, actor: str
) -> ReconciliationItem:
    """The version after `current` of the same record."""
    prefix = current.sk.rsplit("#", 1)[0] + "#"
    return _item(current.pk, prefix, int(current.version) + 1, document, status, at, actor)
