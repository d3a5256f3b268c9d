"""Cases: every change is one TransactWriteItems of the case (conditional on its version) and its audit event, so a
case never changes without its audit trail and two officers acting at once cannot overwrite each other."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.expressions.update import Action

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import AlreadyExists, ConcurrencyConflict
from moncore.store import cursors
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import CaseItem
from moncore.store.transact import ConditionFailed, TxBuilder


def create(item: CaseItem, audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.put("case", item, CaseItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise AlreadyExists(f"case {item.id} already exists") from None


def update(case_id: str, expected_version: int, actions: Sequence[Action], audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.update(
        "case",
        CaseItem(case_id),
        [*actions, CaseItem.version.add(1), CaseItem.updated_at.set(audit.recorded_at)],
        CaseItem.version == expected_version,
    )
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise ConcurrencyConflict(f"case {case_id} changed meanwhile; read it again and retry") from None


def get(case_id: str) -> CaseItem | None:
    try:
        return CaseItem.get(case_id, consistent_read=True)
    except CaseItem.DoesNotExist:
        return None


def list_for_tenant(
    tenant_id: str, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[CaseItem], str | None]:
    start = (
        cursors.decode(cursor, names=("pk", "tenant_id", "created_at"), scope_name="tenant_id", scope_value=tenant_id)
        if cursor
        else None
    )
    condition = None if status is None else CaseItem.status == status
    result = CaseItem.by_tenant.query(
        tenant_id, filter_condition=condition, limit=limit, last_evaluated_key=start, scan_index_forward=False
    )
    items = list(result)
    last = result.last_evaluated_key
    return items, (cursors.encode(last) if last else None)  # a filtered page may be short and still not the last
