"""KYC checks and the user's tier: every change is one TransactWriteItems with its audit event.

- A check is created once (conditional put, id derived from the idempotency key) with its audit event.
- An adjudication completes the check (condition: still PENDING, so a result is applied once however many events
  report it) and sets the user's tier and KYC attributes (condition: the tier is still the one the decision was
  computed from, so a concurrent change makes the service decide again instead of overwriting it).
- A downgrade by the tier_enforcement job is conditional on the tier and the expiry it read (a renewal in between
  wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pynamodb.expressions.update import Action

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import AlreadyExists
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import KycCheckItem, UserItem, tenant_key
from moncore.store.transact import ConditionFailed, TxBuilder

PENDING = "PENDING"
COMPLETED = "COMPLETED"


class UserMoved(Exception):
    """The user's tier (or KYC expiry) is no longer what the decision was computed from: read again, decide again."""


class CheckSettled(Exception):
    """The check was completed by another event first."""


def check_key(tenant_id: str, check_id: str) -> str:
    return tenant_key(tenant_id, check_id)


def create_check(item: KycCheckItem, audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.put("check", item, KycCheckItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise AlreadyExists(f"KYC check {item.id} already exists") from None


def find_check(tenant_id: str, check_id: str) -> KycCheckItem | None:
    try:
        return KycCheckItem.get(check_key(tenant_id, check_id), consistent_read=True)
    except KycCheckItem.DoesNotExist:
        return None


@dataclass(frozen=True, slots=True)
class Completion:
    tenant_id: str
    check_id: str
    user_id: str
    expected_tier: str  # the tier the decision was computed from
    check_actions: Sequence[Action]
    user_actions: Sequence[Action]


def complete_check(completion: Completion, audit: AuditEvent) -> None:
    """Complete the check and update the user in one transaction. Raises CheckSettled or UserMoved (nothing
    written either way)."""
    tx = TxBuilder()
    tx.update(
        "check",
        KycCheckItem(check_key(completion.tenant_id, completion.check_id)),
        completion.check_actions,
        KycCheckItem.pk.exists() & (KycCheckItem.status == PENDING),
    )
    tx.update(
        "user",
        UserItem(tenant_key(completion.tenant_id, completion.user_id)),
        completion.user_actions,
        UserItem.pk.exists() & (UserItem.tier == completion.expected_tier),
    )
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "check" in failed.labels:
            raise CheckSettled() from None
        raise UserMoved() from None


def set_case(tenant_id: str, check_id: str, case_id: str) -> None:
    """Link the case opened for a referred check (idempotent: the case id derives from the check)."""
    KycCheckItem(check_key(tenant_id, check_id)).update(
        actions=[KycCheckItem.case_id.set(case_id)], condition=KycCheckItem.pk.exists()
    )


def downgrade(
    tenant_id: str,
    user_id: str,
    *,
    expected_tier: str,
    expected_expiry: str | None,
    actions: Sequence[Action],
    audit: AuditEvent,
) -> None:
    """Change the user's tier down, if the tier and the KYC expiry are still what was read. Raises UserMoved."""
    condition = UserItem.pk.exists() & (UserItem.tier == expected_tier)
    if expected_expiry is None:
        condition = condition & UserItem.kyc_expires_at.does_not_exist()
    else:
        condition = condition & (UserItem.kyc_expires_at == expected_expiry)
    tx = TxBuilder()
    tx.update("user", UserItem(tenant_key(tenant_id, user_id)), actions, condition)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise UserMoved() from None


def users_with_expired_kyc(tenant_id: str, now: str) -> list[UserItem]:
    """The tenant's users above tier_0 whose KYC evidence expired at or before `now` (the users-by-tenant index,
    filtered: a daily job's read of the tenant's users; eventually consistent, a user changed in the last instant is
    seen by the next run)."""
    condition = (UserItem.kyc_expires_at <= now) & (UserItem.tier != "tier_0")
    return list(UserItem.by_tenant.query(tenant_id, filter_condition=condition))
