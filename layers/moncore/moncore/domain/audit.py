"""Audit events: who did what, to which subject, under which correlation id; the payload is hashed canonically."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.domain.ids import new_id

PLATFORM_TENANT = "_platform"  # audit partition for actions not owned by one tenant (e.g. admin key issuance)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    event_id: str
    tenant_id: str
    action: str
    actor: str
    correlation_id: str
    subject_id: str | None
    payload: dict[str, Any]
    recorded_at: str

    @property
    def payload_hash(self) -> str:
        return sha256_hex(self.payload)


def audit_event(
    *, tenant_id: str, action: str, actor: str, correlation_id: str, subject_id: str | None, payload: dict[str, Any]
) -> AuditEvent:
    return AuditEvent(
        event_id=new_id("evt"),
        tenant_id=tenant_id,
        action=action,
        actor=actor,
        correlation_id=correlation_id,
        subject_id=subject_id,
        payload=payload,
        recorded_at=now_rfc3339(),
    )
