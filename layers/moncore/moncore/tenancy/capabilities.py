"""Capability changes with four-eyes approval (issue 4; docs/capabilities-and-freezes.md).

- A change to `live` needs a contract reference (422 without one) and two different admins: it is stored as a
  PENDING request (202) and applied only when another admin approves it; the approval, the capability update and the
  audit event are one transaction whose conditions re-check the four-eyes rule (approver != requester), that the
  request is still PENDING and not expired, and that the mode is still the one read (so the audit `from` is exact).
- A change to `disabled` or `shadow` applies at once (200): it can only take risk away.
- Every change, request, approval and rejection is an audit event in the tenant's audit partition.

Who may do what is decided by the admin routes (functions/admin_api/app.py): operators and admins request and make
immediate changes and reject, only admins approve. The same API key can never be both requester and approver
(403 `four_eyes_required`); admin keys are personal, one per person.

Errors: NotFound, ValidationFailed, FourEyesRequired, InvalidStateTransition, ConcurrencyConflict (retryable).
"""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.capabilities import REQUEST_TTL, Capability, Mode, RequestStatus, needs_four_eyes, shown_status
from moncore.domain.clock import now_rfc3339, rfc3339, utc_now
from moncore.domain.context import Caller, Result
from moncore.domain.errors import (
    ConcurrencyConflict,
    FourEyesRequired,
    InvalidStateTransition,
    NotFound,
    ValidationFailed,
)
from moncore.domain.ids import new_id
from moncore.store import capabilities as store
from moncore.store.models import ApprovalItem
from moncore.tenancy.service import TenancyService

_ATTEMPTS = 5  # re-reads when the capability's mode moved between our read and our write


class CapabilityService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    # ---------------------------------------------------------------- change (or request) a mode
    def change(self, caller: Caller, tenant_id: str, *, capability: str, mode: str, contract_ref: str | None) -> Result:
        """Apply a change to disabled/shadow now; store a change to live as a PENDING request for a second admin."""
        cap, target = Capability(capability), Mode(mode)
        if needs_four_eyes(target):
            if not contract_ref:
                raise ValidationFailed(
                    "turning a capability live needs the contract reference it is based on",
                    errors=[{"loc": ["body", "contract_ref"], "msg": "required when mode is live"}],
                )
            return Result(self._request(caller, tenant_id, cap, target, contract_ref))
        return Result(self._apply_now(caller, tenant_id, cap, target, contract_ref))

    def _apply_now(
        self, caller: Caller, tenant_id: str, cap: Capability, target: Mode, contract_ref: str | None
    ) -> dict[str, Any]:
        for _ in range(_ATTEMPTS):
            previous = self._tenancy.get_tenant(tenant_id).capabilities.get(cap.value)
            change = store.ModeChange(tenant_id, cap.value, target.value, previous)
            payload = _change_payload(change, contract_ref, requested_by=caller.actor)
            audit = audit_event(
                tenant_id=tenant_id,
                action="capability.changed",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=cap.value,
                payload=payload,
            )
            try:
                store.change_mode(change, audit)
            except store.ModeChanged:
                continue
            self._tenancy.forget(tenant_id)
            tenant = self._tenancy.get_tenant(tenant_id)
            return payload | {
                "status": "APPLIED",
                "changed_at": audit.recorded_at,
                "capabilities": dict(tenant.capabilities),
            }
        raise ConcurrencyConflict("the tenant's capabilities are changing concurrently; nothing was changed, retry")

    def _request(
        self, caller: Caller, tenant_id: str, cap: Capability, target: Mode, contract_ref: str
    ) -> dict[str, Any]:
        tenant = self._tenancy.get_tenant(tenant_id)  # NotFound for an unknown tenant
        now = utc_now()
        request_id = new_id("apr")
        item = ApprovalItem(
            tenant_id,
            store.request_sk(request_id),
            request_id=request_id,
            tenant_id=tenant_id,
            kind=store.CAPABILITY_KIND,
            capability=cap.value,
            mode=target.value,
            contract_ref=contract_ref,
            previous_mode=tenant.capabilities.get(cap.value),
            status=RequestStatus.PENDING.value,
            requested_by=caller.actor,
            requested_at=rfc3339(now),
            expires_at=rfc3339(now + REQUEST_TTL),
            correlation_id=caller.correlation_id,
        )
        view = request_view(item, rfc3339(now))
        store.create_request(
            item,
            audit_event(
                tenant_id=tenant_id,
                action="capability.change_requested",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=request_id,
                payload=view,
            ),
        )
        return view

    # ---------------------------------------------------------------- decisions
    def approve(self, caller: Caller, tenant_id: str, request_id: str, *, reason: str | None) -> dict[str, Any]:
        """Apply a PENDING request made by someone else. Approving again (same approver) answers the approval."""
        item = self._find(tenant_id, request_id)
        if item.status == RequestStatus.APPROVED.value and item.decided_by == caller.actor:
            return request_view(item, now_rfc3339())  # a retry of our own approval
        for _ in range(_ATTEMPTS):
            now = now_rfc3339()
            _check_approvable(item, caller, now)
            previous = self._tenancy.get_tenant(tenant_id).capabilities.get(item.capability)
            change = store.ModeChange(tenant_id, item.capability, item.mode, previous)
            approved = _decided(item, RequestStatus.APPROVED, caller.actor, now, reason)
            payload = _change_payload(change, item.contract_ref, requested_by=item.requested_by) | {
                "request_id": request_id,
                "approved_by": caller.actor,
                "four_eyes": True,
            }
            audit = audit_event(
                tenant_id=tenant_id,
                action="capability.changed",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=item.capability,
                payload=payload,
            )
            try:
                store.approve(item, approved_by=caller.actor, at=now, reason=reason, change=change, audit=audit)
            except store.RequestDecided:
                item = self._find(tenant_id, request_id)  # decided meanwhile: the re-check says by whom
                continue
            except store.ModeChanged:
                continue
            self._tenancy.forget(tenant_id)
            return request_view(approved, now)
        raise ConcurrencyConflict("the request or the tenant's capabilities are changing concurrently; retry")

    def reject(self, caller: Caller, tenant_id: str, request_id: str, *, reason: str | None) -> dict[str, Any]:
        """Close a PENDING (or expired) request without applying it (no second admin needed: it takes no risk)."""
        item = self._find(tenant_id, request_id)
        if item.status == RequestStatus.REJECTED.value and item.decided_by == caller.actor:
            return request_view(item, now_rfc3339())
        if item.status != RequestStatus.PENDING.value:
            raise InvalidStateTransition(f"request {request_id} is {item.status}")
        now = now_rfc3339()
        rejected = _decided(item, RequestStatus.REJECTED, caller.actor, now, reason)
        view = request_view(rejected, now)
        audit = audit_event(
            tenant_id=tenant_id,
            action="capability.change_rejected",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=request_id,
            payload=view,
        )
        try:
            store.reject(item, rejected_by=caller.actor, at=now, reason=reason, audit=audit)
        except store.RequestDecided:
            raise InvalidStateTransition(f"request {request_id} was decided meanwhile") from None
        return view

    # ---------------------------------------------------------------- reads
    def get_request(self, tenant_id: str, request_id: str) -> dict[str, Any]:
        return request_view(self._find(tenant_id, request_id), now_rfc3339())

    def list_requests(self, tenant_id: str, *, status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        now = now_rfc3339()
        items, next_cursor = store.list_requests(tenant_id, limit=limit, cursor=cursor, status=status, now=now)
        return {"items": [request_view(item, now) for item in items], "next_cursor": next_cursor}

    def _find(self, tenant_id: str, request_id: str) -> ApprovalItem:
        item = store.find_request(tenant_id, request_id)
        if item is None:
            raise NotFound(f"capability request {request_id} not found")
        return item


# -------------------------------------------------------------------- helpers
def _check_approvable(item: ApprovalItem, caller: Caller, now: str) -> None:
    if item.requested_by == caller.actor:
        raise FourEyesRequired("a change to live must be approved by another admin than the one who requested it")
    status = shown_status(item.status, item.expires_at, now)
    if status is not RequestStatus.PENDING:
        raise InvalidStateTransition(f"request {item.request_id} is {status.value}")


def _decided(item: ApprovalItem, status: RequestStatus, by: str, at: str, reason: str | None) -> ApprovalItem:
    """A copy of the request as it reads after the decision (for the answer and the audit payload)."""
    decided = ApprovalItem(item.pk, item.sk, **{name: getattr(item, name) for name in _REQUEST_FIELDS})
    decided.status, decided.decided_by, decided.decided_at, decided.decision_reason = status.value, by, at, reason
    return decided


_REQUEST_FIELDS = (
    "request_id",
    "tenant_id",
    "kind",
    "capability",
    "mode",
    "contract_ref",
    "previous_mode",
    "requested_by",
    "requested_at",
    "expires_at",
    "correlation_id",
)


def _change_payload(change: store.ModeChange, contract_ref: str | None, *, requested_by: str) -> dict[str, Any]:
    return {
        "tenant_id": change.tenant_id,
        "capability": change.capability,
        "from": change.previous,
        "to": change.mode,
        "contract_ref": contract_ref,
        "requested_by": requested_by,
        "request_id": None,
        "approved_by": None,
        "four_eyes": False,
    }


def request_view(item: ApprovalItem, now: str) -> dict[str, Any]:
    return {
        "id": item.request_id,
        "tenant_id": item.tenant_id,
        "capability": item.capability,
        "mode": item.mode,
        "contract_ref": item.contract_ref,
        "previous_mode": item.previous_mode,
        "status": shown_status(item.status, item.expires_at, now).value,
        "requested_by": item.requested_by,
        "requested_at": item.requested_at,
        "expires_at": item.expires_at,
        "decided_by": item.decided_by,
        "decided_at": item.decided_at,
        "reason": item.decision_reason,
    }
