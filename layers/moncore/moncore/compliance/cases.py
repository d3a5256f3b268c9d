"""Case management for compliance officers (admin plane): open, assign, note, escalate, decide.

A decision closes the case and carries out its outcome first: `released` captures the held funds, `reversed` voids
them (or reverses a settled payment) through the ledger's own lifecycle steps under an op id derived from the case,
and `frozen` freezes the case's user; a retried decision therefore never moves money twice (the ledger step replays),
then the case closes (conditional on its version). On a `screening_hit` case the decision also settles the user's
screening status (compliance/screening/gate.py on_case_decided): `no_action` remembers the case's matches as false
positives and clears the user, `frozen` and `reported` mark the user a confirmed match. Every action writes its
audit event in the same transaction as the case.

Errors: NotFound, Forbidden (role), InvalidStateTransition, ValidationFailed, ConcurrencyConflict (retryable), and
the ledger's errors for money outcomes.
"""

from __future__ import annotations

from typing import Any

from moncore.compliance.case_records import new_case
from moncore.compliance.freezes import FreezeService
from moncore.compliance.screening.gate import ScreeningGate, default_gate
from moncore.domain.audit import audit_event
from moncore.domain.canonical import sha256_hex
from moncore.domain.cases import (
    CASE_WORKERS,
    MONEY_OUTCOMES,
    CaseKind,
    CaseOutcome,
    CaseStatus,
    require_decider,
    require_move,
)
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import AlreadyExists, Forbidden, InvalidStateTransition, NotFound, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.transactions import TxnStatus, TxnType
from moncore.ledger import views
from moncore.ledger.lifecycle import LifecycleService
from moncore.store import cases as case_store
from moncore.store import ledger as ledger_store
from moncore.store.accounts import find_user_item
from moncore.store.models import CaseItem
from moncore.store.tenancy import find_tenant_item


class CaseService:
    def __init__(
        self,
        lifecycle: LifecycleService | None = None,
        freezes: FreezeService | None = None,
        screening: ScreeningGate | None = None,
    ) -> None:
        self._lifecycle = lifecycle or LifecycleService()
        self._freezes = freezes or FreezeService()
        self._screening = screening or default_gate()

    def open_case(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        tenant_id: str,
        kind: str,
        reason: str,
        subject_user_id: str | None = None,
        txn_id: str | None = None,
    ) -> Result:
        """Open a case (by an officer, or by the kernel for a review decision or a screening hit)."""
        if find_tenant_item(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        if subject_user_id is not None and find_user_item(tenant_id, subject_user_id) is None:
            raise NotFound(f"user {subject_user_id} not found")
        if txn_id is not None and ledger_store.load_transaction(tenant_id, txn_id) is None:
            raise NotFound(f"transaction {txn_id} not found")
        case_id = derived_id("case", caller.tenant_id or "_admin", request.idempotency_key)
        item, opened = new_case(
            caller,
            case_id=case_id,
            tenant_id=tenant_id,
            kind=CaseKind(kind),
            reason=reason,
            subject_user_id=subject_user_id,
            txn_id=txn_id,
        )
        try:
            case_store.create(item, opened)
        except AlreadyExists:
            return Result(self.get_case(case_id), replayed=True)
        return Result(case_view(item))

    def get_case(self, case_id: str) -> dict[str, Any]:
        return case_view(self._load(case_id))

    def list_cases(self, tenant_id: str, *, status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        items, next_cursor = case_store.list_for_tenant(tenant_id, status=status, limit=limit, cursor=cursor)
        return {"items": [case_view(i) for i in items], "next_cursor": next_cursor}

    def assign(self, caller: Caller, case_id: str, assignee: str) -> Result:
        item = self._load(case_id)
        _require_worker(caller)
        target = CaseStatus.IN_REVIEW if item.status == CaseStatus.OPEN.value else CaseStatus(item.status)
        require_move(CaseStatus(item.status), target)
        actions = [CaseItem.assignee.set(assignee), CaseItem.status.set(target.value)]
        return self._change(caller, item, actions, "case.assigned", {"assignee": assignee})

    def add_note(self, caller: Caller, case_id: str, text: str) -> Result:
        item = self._load(case_id)
        _require_worker(caller)
        if item.status == CaseStatus.CLOSED.value:
            raise ValidationFailed("a closed case takes no more notes")
        note = {"at": now_rfc3339(), "by": caller.actor, "text": text}
        actions = [CaseItem.notes.set([*(item.notes or []), note])]
        return self._change(caller, item, actions, "case.noted", {"text_sha256": sha256_hex(text)})

    def escalate(self, caller: Caller, case_id: str, reason: str) -> Result:
        item = self._load(case_id)
        _require_worker(caller)
        require_move(CaseStatus(item.status), CaseStatus.ESCALATED)
        actions = [CaseItem.status.set(CaseStatus.ESCALATED.value)]
        return self._change(caller, item, actions, "case.escalated", {"reason": reason})

    def decide(self, caller: Caller, request: RequestIdentity, case_id: str, *, outcome: str, reason: str) -> Result:
        item = self._load(case_id)
        status = CaseStatus(item.status)
        if status is CaseStatus.CLOSED and item.outcome == outcome and item.decision_reason == reason:
            return Result(case_view(item), replayed=True)  # the same decision, retried
        require_decider(status, caller.role)
        require_move(status, CaseStatus.CLOSED)
        decided = CaseOutcome(outcome)
        moved = self._move_money(caller, item, decided, reason) if decided in MONEY_OUTCOMES else None
        if decided is CaseOutcome.FROZEN:
            moved = self._freeze_subject(caller, item, reason)
        screened = self._screening.on_case_decided(caller, item, decided, reason)  # screening_hit cases only
        actions = [
            CaseItem.status.set(CaseStatus.CLOSED.value),
            CaseItem.outcome.set(decided.value),
            CaseItem.decided_by.set(caller.actor),
            CaseItem.decision_reason.set(reason),
        ]
        payload = {"outcome": decided.value, "reason": reason, "ledger": moved}
        if screened is not None:
            payload["screening"] = screened
        return self._change(caller, item, actions, "case.decided", payload)

    # ---------------------------------------------------------------- internals
    def _move_money(self, caller: Caller, item: CaseItem, outcome: CaseOutcome, reason: str) -> dict[str, Any]:
        if item.txn_id is None:
            raise ValidationFailed(f"outcome {outcome.value} needs a case about a transaction")
        stored = ledger_store.load_transaction(item.tenant_id, item.txn_id)
        if stored is None:
            raise NotFound(f"transaction {item.txn_id} not found")
        # The ledger step runs as the deciding officer, under an op id derived from the case: a retry replays it.
        officer = Caller(item.tenant_id, caller.actor, caller.role, caller.correlation_id)
        op = RequestIdentity(
            idempotency_key=f"case:{item.id}:{outcome.value}",
            request_hash=sha256_hex({"case": item.id, "outcome": outcome.value}),
            fingerprint={},
        )
        status = views.txn_state(stored).status
        if outcome is CaseOutcome.RELEASED and stored.header.type == TxnType.WITHDRAWAL.value:
            # A held withdrawal goes ahead by being sent to its provider, not by a capture: its webhook settles it.
            from moncore.ledger.withdrawals import release_held  # noqa: PLC0415 - withdrawals build on compliance

            return release_held(officer, item)
        if outcome is CaseOutcome.RELEASED:
            result = self._lifecycle.capture(officer, op, item.txn_id, amount_minor=None)
        elif status is TxnStatus.SETTLED:  # a retry finds its reversal (derived from the op) and replays it
            result = self._lifecycle.reverse(officer, op, item.txn_id, amount_minor=None, reason=reason)
        else:
            result = self._lifecycle.void(officer, op, item.txn_id)
        return {"txn_id": result.body["id"], "status": result.body["status"]}

    def _freeze_subject(self, caller: Caller, item: CaseItem, reason: str) -> dict[str, Any]:
        """Freeze the case's user (a retried decision finds the user frozen already and goes on closing)."""
        if item.subject_user_id is None:
            raise ValidationFailed("outcome frozen needs a case about a user (subject_user_id)")
        try:
            self._freezes.freeze_user(caller, item.tenant_id, item.subject_user_id, reason=f"case {item.id}: {reason}")
        except InvalidStateTransition:
            user = find_user_item(item.tenant_id, item.subject_user_id)
            if user is None or user.status != "FROZEN":
                raise
        return {"user_id": item.subject_user_id, "status": "frozen"}

    def _change(
        self, caller: Caller, item: CaseItem, actions: list[Any], action: str, payload: dict[str, Any]
    ) -> Result:
        case_store.update(item.id, int(item.version), actions, self._audit(caller, item, action, payload))
        return Result(self.get_case(item.id))

    def _load(self, case_id: str) -> CaseItem:
        item = case_store.get(case_id)
        if item is None:
            raise NotFound(f"case {case_id} not found")
        return item

    @staticmethod
    def _audit(caller: Caller, item: CaseItem, action: str, payload: dict[str, Any]) -> Any:
        return audit_event(
            tenant_id=item.tenant_id,
            action=action,
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=item.id,
            payload={"case_id": item.id, **payload},
        )


def _require_worker(caller: Caller) -> None:
    if caller.role not in CASE_WORKERS:
        raise Forbidden(f"case work needs one of the roles: {', '.join(CASE_WORKERS)}")


def case_view(item: CaseItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "tenant_id": item.tenant_id,
        "kind": item.kind,
        "status": item.status,
        "outcome": item.outcome,
        "reason": item.reason,
        "subject_user_id": item.subject_user_id,
        "txn_id": item.txn_id,
        "assignee": item.assignee,
        "notes": list(item.notes or []),
        "opened_by": item.opened_by,
        "decided_by": item.decided_by,
        "decision_reason": item.decision_reason,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "version": int(item.version),
    }
