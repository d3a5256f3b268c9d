"""AML events (append-only table): the standalone write of a block, and the reads of the compliance views.

Allow and review events are not written here: they are `Posting.records` of the posting they decided."""

from __future__ import annotations

from pynamodb.exceptions import PutError

from moncore.store import cursors
from moncore.store.models import AmlEventItem, tenant_key


def record_once(item: AmlEventItem) -> bool:
    """Append an AML event written on its own (a blocked request, a sweep finding); False when it is already on
    record (a retry of the same request, a second sweep run: the first event stays the record, never overwritten)."""
    try:
        item.save(condition=AmlEventItem.sk.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def for_subject(tenant_id: str, subject_id: str) -> list[AmlEventItem]:
    return list(AmlEventItem.query(tenant_key(tenant_id, subject_id), consistent_read=True))


def list_for_tenant(tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[AmlEventItem], str | None]:
    """The tenant's AML events, newest first."""
    names = ("pk", "sk", "tenant_id", "decided_sk")
    start = cursors.decode(cursor, names=names, scope_name="tenant_id", scope_value=tenant_id) if cursor else None
    result = AmlEventItem.by_tenant.query(tenant_id, limit=limit, last_evaluated_key=start, scan_index_forward=False)
    items = list(result)
    last = result.last_evaluated_key
    return items, (cursors.encode(last) if last else None)
