"""Freeze and unfreeze of users and accounts: one conditional status update with its audit event, in one transaction.

The status is what postings check: store.ledger.post() carries a ConditionCheck on every user account (ACTIVE) and
on its user (ACTIVE) in the posting's own TransactWriteItems, so a posting that commits after a freeze fails there,
whatever it read before (DynamoDB serialises the two transactions on the item).
"""

from __future__ import annotations

from dataclasses import dataclass

from moncore.domain.audit import AuditEvent
from moncore.domain.transactions import AccountKind
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import AccountItem, UserItem, tenant_key
from moncore.store.transact import ConditionFailed, TxBuilder


class StatusMoved(Exception):
    """The subject is not (or no longer) in the expected status, or does not exist: re-read to tell which."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    tenant_id: str
    subject_id: str  # user id or account id
    expected: str  # the status the change starts from
    status: str
    reason: str
    actor: str
    at: str


def set_user_status(change: StatusChange, audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.update(
        "user",
        UserItem(tenant_key(change.tenant_id, change.subject_id)),
        [
            UserItem.status.set(change.status),
            UserItem.status_reason.set(change.reason),
            UserItem.status_changed_by.set(change.actor),
            UserItem.status_changed_at.set(change.at),
        ],
        UserItem.pk.exists() & (UserItem.status == change.expected),
    )
    tx.put("audit", audit_item(audit), append_condition())
    _execute(tx)


def set_account_status(change: StatusChange, audit: AuditEvent) -> None:
    """User accounts only: freezing a tenant's system account would stop every posting of the tenant."""
    tx = TxBuilder()
    tx.update(
        "account",
        AccountItem(tenant_key(change.tenant_id, change.subject_id)),
        [
            AccountItem.status.set(change.status),
            AccountItem.status_reason.set(change.reason),
            AccountItem.status_changed_by.set(change.actor),
            AccountItem.status_changed_at.set(change.at),
        ],
        AccountItem.pk.exists()
        & (AccountItem.kind == AccountKind.USER.value)
        & (AccountItem.status == change.expected),
    )
    tx.put("audit", audit_item(audit), append_condition())
    _execute(tx)


def _execute(tx: TxBuilder) -> None:
    try:
        tx.execute()
    except ConditionFailed:
        raise StatusMoved() from None
