"""AML decisions of money movements: inputs from the parties and their velocity, the versioned rule set
(moncore.domain.aml), and the AML event every decision writes (docs/aml.md).

- allow and review: the AML event is written by the posting itself (same TransactWriteItems), so it exists exactly
  when the movement does; a review also opens its case in that write (`review_case`);
- block: nothing is posted, so the event is written on its own, once per transaction id (a retry of the same blocked
  request finds it and writes no second one), and the refusal is audited.
"""

from __future__ import annotations

from typing import Any

from moncore.compliance.case_records import new_case
from moncore.domain.aml import (
    RULESET_VERSION,
    AmlDecision,
    AmlInputs,
    Decision,
    Operation,
    Party,
    Reason,
    evaluate,
    pass_through,
)
from moncore.domain.audit import AuditEvent
from moncore.domain.cases import CaseKind
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.domain.errors import AlreadyExists, ComplianceBlocked
from moncore.domain.ids import derived_id, new_id
from moncore.domain.velocity import Direction, Velocity, VelocityCharge, stale_attributes, summarize
from moncore.store import accounts as account_store
from moncore.store import aml as aml_store
from moncore.store import cases as case_store
from moncore.store.models import AmlEventItem, CaseItem, UserItem
from moncore.store.velocity import read_users_and_velocity


def party(user: UserItem, velocity: dict[str, int], decided_at: str) -> Party:
    return party_of(user, summarize(velocity, decided_at))


def decide(
    operation: Operation,
    *,
    amount_minor: int,
    currency: str,
    decided_at: str,
    payer: Party | None,
    payee: Party | None,
) -> AmlDecision:
    inputs = AmlInputs(operation, amount_minor, currency, decided_at, payer, payee)
    return evaluate(inputs)


def velocity_charges(
    decision: AmlDecision, velocity: dict[tuple[str, str], dict[str, int]], recorded_at: str
) -> tuple[VelocityCharge, ...]:
    """What the posting adds to the parties' velocity: the payer's outgoing and the payee's incoming movement,
    removing the buckets that fell out of their windows since they were read."""
    inputs = decision.inputs
    if inputs.operation is Operation.FX_CONVERSION:
        return ()  # the user's own money changes currency: neither in nor out
    charges = []
    for who, direction in ((inputs.payer, Direction.OUT), (inputs.payee, Direction.IN)):
        if who is None:
            continue
        seen = velocity.get((who.user_id, inputs.currency), {})
        charges.append(
            VelocityCharge(
                who.user_id,
                inputs.currency,
                direction,
                inputs.amount_minor,
                recorded_at,
                stale_attributes(seen, recorded_at),
            )
        )
    return tuple(charges)


def event_item(
    caller: Caller,
    subject_id: str,
    decision: AmlDecision,
    *,
    case_id: str | None = None,
    final: Decision | None = None,
    sort_key: str | None = None,
) -> AmlEventItem:
    """The AML event of a decision about `subject_id` (a transaction id). `final` is the decision carried out when
    it differs from the rules' (a review the operation cannot hold becomes a block)."""
    tenant_id = caller.require_tenant()
    outcome = final or decision.decision
    decided_at = decision.inputs.decided_at
    return AmlEventItem(
        f"{tenant_id}#{subject_id}",
        sort_key or f"AML#{outcome.value}",
        event_id=new_id("aml"),
        tenant_id=tenant_id,
        decided_sk=f"{decided_at}#{subject_id}",
        subject_id=subject_id,
        operation=decision.inputs.operation.value,
        ruleset=decision.ruleset,
        decision=outcome.value,
        score=decision.score,
        reasons=[reason.record() for reason in decision.reasons],
        inputs=decision.inputs.record(),
        inputs_sha256=decision.inputs_hash,
        user_ids=sorted({p.user_id for p in (decision.inputs.payer, decision.inputs.payee) if p}),
        case_id=case_id,
        actor=caller.actor,
        correlation_id=caller.correlation_id,
        decided_at=decided_at,
    )


def block(caller: Caller, subject_id: str, decision: AmlDecision, *, detail: str | None = None) -> ComplianceBlocked:
    """Record a block (its AML event, once per transaction) and return the refusal to raise."""
    aml_store.record_once(event_item(caller, subject_id, decision, final=Decision.BLOCK))
    rules = ", ".join(reason.rule for reason in decision.reasons)
    return ComplianceBlocked(
        detail or f"blocked by the AML rules ({decision.ruleset}, score {decision.score}: {rules})",
        errors=[{"loc": ["body"], "msg": reason.detail, "rule": reason.rule} for reason in decision.reasons],
    )


def review_case(caller: Caller, txn_id: str, decision: AmlDecision) -> tuple[CaseItem, AuditEvent]:
    """The case a review opens, written with the held posting: about the transaction and the user whose money is
    held (the payer; for a funding the payee), with the rules' reasons. Its id derives from the transaction."""
    tenant_id = caller.require_tenant()
    inputs = decision.inputs
    subject = inputs.payer or inputs.payee
    case_id = review_case_id(tenant_id, txn_id)
    reason = "; ".join(f"{r.rule}: {r.detail}" for r in decision.reasons)
    return new_case(
        caller,
        case_id=case_id,
        tenant_id=tenant_id,
        kind=CaseKind.AML_REVIEW,
        reason=f"AML review ({decision.ruleset}, score {decision.score}): {reason}",
        subject_user_id=subject.user_id if subject else None,
        txn_id=txn_id,
    )


def review_case_id(tenant_id: str, txn_id: str) -> str:
    """The id of the case an AML review of `txn_id` opens (derived: a retry finds the same case)."""
    return derived_id("case", tenant_id, f"aml:{txn_id}")


SWEEP_ACTOR = "system:aml-sweep"
_SWEEP_BATCH = 50  # velocity items per BatchGetItem (DynamoDB takes 100 keys)


def sweep(tenant_id: str, *, now: str | None = None, correlation_id: str = "aml-sweep") -> dict[str, Any]:
    """The scheduled AML sweep of one tenant: score every user's last 30 days per currency with the sweep rule
    (moncore.domain.aml.pass_through) and, for a finding, write an AML event and open a case about the user, once
    per user, currency and month (ids derived from them: a second run the same month opens nothing)."""
    moment = now or now_rfc3339()
    caller = Caller(tenant_id, SWEEP_ACTOR, "system", correlation_id)
    pairs = sorted({(a.user_id, a.currency) for a in account_store.tenant_accounts(tenant_id) if a.user_id})
    opened: list[str] = []
    for start in range(0, len(pairs), _SWEEP_BATCH):
        batch = pairs[start : start + _SWEEP_BATCH]
        users, velocity = read_users_and_velocity(tenant_id, [user for user, _ in batch], batch)
        for user_id, currency in batch:
            if user_id not in users:
                continue
            windows = summarize(velocity.get((user_id, currency), {}), moment)
            finding = pass_through(windows, currency)
            if finding is not None and _open_sweep_case(caller, users[user_id], currency, windows, finding, moment):
                opened.append(user_id)
    return {"accounts_checked": len(pairs), "cases_opened": opened}


def _open_sweep_case(
    caller: Caller, user: UserItem, currency: str, windows: Velocity, finding: Reason, moment: str
) -> bool:
    period = moment[:7]
    inputs = AmlInputs(Operation.SWEEP, windows.in_30d.amount_minor, currency, moment, None, party_of(user, windows))
    decision = AmlDecision(Decision.REVIEW, finding.score, (finding,), inputs, RULESET_VERSION, inputs.inputs_hash)
    case_id = derived_id("case", caller.require_tenant(), f"aml-sweep:{user.id}:{currency}:{period}")
    item, opened = new_case(
        caller,
        case_id=case_id,
        tenant_id=user.tenant_id,
        kind=CaseKind.AML_REVIEW,
        reason=f"AML sweep ({RULESET_VERSION}): {finding.rule}: {finding.detail}",
        subject_user_id=user.id,
    )
    try:
        case_store.create(item, opened)
    except AlreadyExists:
        return False  # found by an earlier run this month
    sort_key = f"AML#sweep#{currency}#{period}"
    aml_store.record_once(event_item(caller, user.id, decision, case_id=case_id, sort_key=sort_key))
    return True


def party_of(user: UserItem, windows: Velocity) -> Party:
    return Party(user.id, user.country, user.tier, user.created_at, windows)


def event_view(item: AmlEventItem) -> dict[str, Any]:
    return {
        "id": item.event_id,
        "tenant_id": item.tenant_id,
        "subject_id": item.subject_id,
        "operation": item.operation,
        "ruleset": item.ruleset,
        "decision": item.decision,
        "score": int(item.score),
        "reasons": item.reasons,
        "inputs_sha256": item.inputs_sha256,
        "inputs": item.inputs,
        "user_ids": item.user_ids,
        "case_id": item.case_id,
        "actor": item.actor,
        "correlation_id": item.correlation_id,
        "decided_at": item.decided_at,
    }


def list_events(tenant_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
    items, next_cursor = aml_store.list_for_tenant(tenant_id, limit=limit, cursor=cursor)
    return {"items": [event_view(item) for item in items], "next_cursor": next_cursor}


def events_of(tenant_id: str, subject_id: str) -> list[dict[str, Any]]:
    return [event_view(item) for item in aml_store.for_subject(tenant_id, subject_id)]
