"""The one way to build a new case and its `case.opened` audit event, for whoever opens it: an officer
(compliance/cases.py), an AML review or sweep (compliance/aml.py), a screening hit (compliance/screening/gate.py).
Writing them is the caller's: alone (store/cases.py) or inside the write that caused the case (a held posting, a
user's creation), so the case exists exactly when its cause does."""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import AuditEvent, audit_event
from moncore.domain.cases import CaseKind, CaseStatus
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.store.models import CaseItem


def new_case(
    caller: Caller,
    *,
    case_id: str,
    tenant_id: str,
    kind: CaseKind,
    reason: str,
    subject_user_id: str | None = None,
    txn_id: str | None = None,
    opened_by: str | None = None,
    context: dict[str, Any] | None = None,
    at: str | None = None,
    **attributes: Any,
) -> tuple[CaseItem, AuditEvent]:
    """An OPEN case (version 0) and its audit event; `context` adds to the event's payload, `attributes` to the item
    (e.g. screening_hits); `at` is the opening instant when the cause has its own (default: now)."""
    now = at or now_rfc3339()
    actor = opened_by or caller.actor
    item = CaseItem(
        case_id,
        id=case_id,
        tenant_id=tenant_id,
        kind=kind.value,
        status=CaseStatus.OPEN.value,
        reason=reason,
        subject_user_id=subject_user_id,
        txn_id=txn_id,
        notes=[],
        opened_by=actor,
        created_at=now,
        updated_at=now,
        version=0,
        **attributes,
    )
    opened = audit_event(
        tenant_id=tenant_id,
        action="case.opened",
        actor=actor,
        correlation_id=caller.correlation_id,
        subject_id=case_id,
        payload={
            "case_id": case_id,
            "kind": kind.value,
            "reason": reason,
            "subject_user_id": subject_user_id,
            "txn_id": txn_id,
            **(context or {}),
        },
    )
    return item, opened
