"""Recording a compliance refusal: what every gate (geo, limits, screening, AML) writes before it raises."""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.context import Caller
from moncore.domain.errors import DomainError
from moncore.store import audit as audit_store


def audit_refusal(caller: Caller, refused: DomainError, *, subject_id: str, context: dict[str, Any]) -> None:
    """Record a compliance refusal (nothing else is written: the posting it refused never happened)."""
    audit_store.append(
        audit_event(
            tenant_id=caller.require_tenant(),
            action="compliance.blocked",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=subject_id,
            payload={"code": refused.code, "detail": refused.detail, "errors": refused.errors or [], **context},
        )
    )
