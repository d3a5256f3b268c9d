"""Screening checks change nothing in DynamoDB but are audited: one append-only audit item per check."""

from __future__ import annotations

from moncore.domain.audit import AuditEvent
from moncore.store.audit import append_condition, audit_item


def record_check(audit: AuditEvent) -> None:
    """A single conditional PutItem (never an overwrite): there is no other change to make atomic with it."""
    audit_item(audit).save(condition=append_condition())
