"""Capability modes of a tenant and the four-eyes requests that turn them live.

Every write is one TransactWriteItems with its audit event. A mode change is conditioned on the mode the service read
(so the audit event's `from` is exact, never a guess); an approval moves the request PENDING -> APPROVED (not expired,
decided by someone other than the requester: the four-eyes rule is a condition of the write itself, not only a check
before it) in the same transaction as the tenant's capability update.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.expressions.condition import Condition

from moncore.domain.audit import AuditEvent
from moncore.domain.capabilities import RequestStatus
from moncore.domain.errors import NotFound
from moncore.store import cursors
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import ApprovalItem, TenantItem
from moncore.store.transact import ConditionFailed, TxBuilder

CAPABILITY_KIND = "capability"


class ModeChanged(Exception):
    """The capability's mode is no longer the one the change was planned on: re-read and plan again."""


class RequestDecided(Exception):
    """The request is no longer approvable (decided, expired, or the decider is its requester): re-read it."""


@dataclass(frozen=True, slots=True)
class ModeChange:
    tenant_id: str
    capability: str
    mode: str
    previous: str | None  # the mode read before the change; None when the tenant record has no such capability


def request_sk(request_id: str, kind: str = CAPABILITY_KIND) -> str:
    return f"{kind}#{request_id}"


def change_mode(change: ModeChange, audit: AuditEvent) -> None:
    """Set the capability's mode (with its audit event). Raises ModeChanged when it moved since it was read."""
    tx = TxBuilder()
    _add_mode_update(tx, change)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise ModeChanged(change.capability) from None


def create_request(item: ApprovalItem, audit: AuditEvent) -> None:
    """Store a PENDING request (with its audit event); NotFound when the tenant does not exist."""
    tx = TxBuilder()
    tx.check("tenant", TenantItem, item.tenant_id, TenantItem.pk.exists())
    tx.put("request", item, ApprovalItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "tenant" in failed.labels:
            raise NotFound(f"tenant {item.tenant_id} not found") from None
        raise


def find_request(tenant_id: str, request_id: str) -> ApprovalItem | None:
    try:
        return ApprovalItem.get(tenant_id, request_sk(request_id), consistent_read=True)
    except ApprovalItem.DoesNotExist:
        return None


def approve(
    item: ApprovalItem, *, approved_by: str, at: str, reason: str | None, change: ModeChange, audit: AuditEvent
) -> None:
    """PENDING -> APPROVED and the capability change, atomically. RequestDecided when the request is no longer
    approvable by `approved_by`, ModeChanged when only the capability moved since `change.previous` was read."""
    condition = (
        (ApprovalItem.status == RequestStatus.PENDING.value)
        & (ApprovalItem.expires_at > at)
        & (ApprovalItem.requested_by != approved_by)
    )
    tx = TxBuilder()
    _add_decision(tx, item, RequestStatus.APPROVED, approved_by, at, reason, condition)
    _add_mode_update(tx, change)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "request" in failed.labels:
            raise RequestDecided(item.request_id) from None
        raise ModeChanged(change.capability) from None


def reject(item: ApprovalItem, *, rejected_by: str, at: str, reason: str | None, audit: AuditEvent) -> None:
    """PENDING -> REJECTED (expired ones too: rejecting takes no risk). RequestDecided when already decided."""
    tx = TxBuilder()
    _add_decision(
        tx, item, RequestStatus.REJECTED, rejected_by, at, reason, ApprovalItem.status == RequestStatus.PENDING.value
    )
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise RequestDecided(item.request_id) from None


def list_requests(
    tenant_id: str, *, limit: int, cursor: str | None, status: str | None, now: str
) -> tuple[list[ApprovalItem], str | None]:
    """The tenant's capability requests, newest first; `status` as answered (PENDING = approvable now, EXPIRED =
    pending past its expiry). Pages may be short when filtered; follow next_cursor until it is null."""
    start = cursors.decode(cursor, names=("pk", "sk"), scope_name="pk", scope_value=tenant_id) if cursor else None
    result = ApprovalItem.query(
        tenant_id,
        ApprovalItem.sk.startswith(f"{CAPABILITY_KIND}#"),
        filter_condition=_status_filter(status, now),
        limit=limit,
        last_evaluated_key=start,
        scan_index_forward=False,
        consistent_read=True,
    )
    items = list(result)
    last = result.last_evaluated_key
    return items, (cursors.encode(last) if last else None)


# ---------------------------------------------------------------- helpers
def _add_mode_update(tx: TxBuilder, change: ModeChange) -> None:
    path = TenantItem.capabilities[change.capability]
    unchanged = path.does_not_exist() if change.previous is None else path == change.previous
    tx.update("tenant", TenantItem(change.tenant_id), [path.set(change.mode)], TenantItem.pk.exists() & unchanged)


def _add_decision(
    tx: TxBuilder,
    item: ApprovalItem,
    status: RequestStatus,
    decided_by: str,
    at: str,
    reason: str | None,
    condition: Condition,
) -> None:
    actions = [
        ApprovalItem.status.set(status.value),
        ApprovalItem.decided_by.set(decided_by),
        ApprovalItem.decided_at.set(at),
    ]
    if reason is not None:
        actions.append(ApprovalItem.decision_reason.set(reason))
    tx.update("request", ApprovalItem(item.pk, item.sk), actions, condition)


def _status_filter(status: str | None, now: str) -> Condition | None:
    condition: Condition | None = None
    if status == RequestStatus.PENDING.value:
        condition = (ApprovalItem.status == status) & (ApprovalItem.expires_at > now)
    elif status == RequestStatus.EXPIRED.value:
        condition = (ApprovalItem.status == RequestStatus.PENDING.value) & (ApprovalItem.expires_at <= now)
    elif status is not None:
        condition = ApprovalItem.status == status
    return condition
