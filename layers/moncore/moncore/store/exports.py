"""Export and evidence bundle records (append-only ExportsTable; moncore/audit/exports.py).

A record is versioned by its sort key: every change is the NEXT version, put with attribute_not_exists together with
its audit event when it has one, so nothing is ever overwritten and the table is append-only in IAM like the ledger.
Two writers that read the same version can never both write the next one (the loser gets VersionTaken). The state of
a record is its latest version: one consistent Query, newest first.
"""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import AuditEvent
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import ExportItem
from moncore.store.transact import ConditionFailed, TxBuilder


class VersionTaken(Exception):
    """Another writer appended this version first: re-read the record and decide again."""


def append(item: ExportItem, audit: AuditEvent | None = None) -> None:
    """Write the next version (and its audit event) atomically; VersionTaken when that version exists."""
    tx = TxBuilder()
    tx.put("record", item, ExportItem.pk.does_not_exist())
    if audit is not None:
        tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "record" in failed.labels:
            raise VersionTaken(f"export {item.pk} version {item.version} exists") from None
        raise


def latest(export_id: str) -> ExportItem | None:
    for item in ExportItem.query(export_id, scan_index_forward=False, limit=1, consistent_read=True):
        return item
    return None


def history(export_id: str) -> list[ExportItem]:
    """Every version of the record, oldest first (tests and the CLI's progress view)."""
    return list(ExportItem.query(export_id, scan_index_forward=True, consistent_read=True))


def version_item(document: dict[str, Any], version: int, recorded_at: str) -> ExportItem:
    return ExportItem(
        str(document["id"]),
        version,
        tenant_id=str(document["tenant_id"]),
        origin=str(document["origin"]),
        status=str(document["status"]),
        document=document,
        recorded_at=recorded_at,
    )
