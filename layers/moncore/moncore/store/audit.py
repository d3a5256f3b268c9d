"""Audit items are always written inside the transaction of the change they describe, so neither exists alone."""

from __future__ import annotations

from pynamodb.expressions.condition import Condition

from moncore.domain.audit import AuditEvent
from moncore.store.models import AuditItem, tenant_key


def audit_item(event: AuditEvent) -> AuditItem:
    return AuditItem(
        tenant_key(event.tenant_id, event.recorded_at[:10]),
        f"{event.recorded_at}#{event.event_id}",
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        action=event.action,
        actor=event.actor,
        correlation_id=event.correlation_id,
        subject_id=event.subject_id,
        payload=event.payload,
        payload_hash=event.payload_hash,
        recorded_at=event.recorded_at,
    )


def append_condition() -> Condition:
    """Every append-only put carries this: it can create an item, never overwrite one."""
    return AuditItem.pk.does_not_exist()


def append(event: AuditEvent) -> None:
    """Write one audit event on its own, for actions that change nothing else in DynamoDB (a job run)."""
    audit_item(event).save(condition=append_condition())
