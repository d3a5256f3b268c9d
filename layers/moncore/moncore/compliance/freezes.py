"""Freezes: admins freeze and unfreeze users and accounts, with a reason; every change is audited.

A frozen account can neither send nor receive, and neither can any account of a frozen user. Enforcement is not
here: it is a ConditionCheck on the account and on its user inside each posting's own TransactWriteItems
(store.ledger.post), so a posting racing a freeze either commits before the freeze or is refused with 422
`account_frozen`; none can slip through on a stale read. Releasing a hold (void, expiry) still works on frozen
accounts (it gives the payer's money back); captures and reversals, which move money, do not.

Transitions: ACTIVE -> FROZEN (freeze) and FROZEN -> ACTIVE (unfreeze); anything else is 409
`invalid_state_transition` (a retried freeze answers 409 "already frozen" and changes nothing). Only user accounts
can be frozen: a tenant's system account takes a leg of every posting of its kind.

Errors: NotFound, InvalidStateTransition, ValidationFailed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moncore.domain.audit import AuditEvent, audit_event
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.domain.errors import AccountNotActive, InvalidStateTransition, NotFound, ValidationFailed
from moncore.domain.transactions import AccountKind, AccountRef
from moncore.store import accounts as account_store
from moncore.store import freezes as store
from moncore.store.models import AccountItem, UserItem

ACTIVE = "ACTIVE"
FROZEN = "FROZEN"


@dataclass(frozen=True, slots=True)
class _Subject:
    kind: str  # user | account
    load: Callable[[str, str], UserItem | AccountItem | None]
    write: Callable[[store.StatusChange, AuditEvent], None]


_USER = _Subject("user", account_store.find_user_item, store.set_user_status)
_ACCOUNT = _Subject("account", account_store.find_account_item, store.set_account_status)


class FreezeService:
    def freeze_user(self, caller: Caller, tenant_id: str, user_id: str, *, reason: str) -> dict[str, Any]:
        return self._change(_USER, caller, tenant_id, user_id, ACTIVE, FROZEN, reason)

    def unfreeze_user(self, caller: Caller, tenant_id: str, user_id: str, *, reason: str) -> dict[str, Any]:
        return self._change(_USER, caller, tenant_id, user_id, FROZEN, ACTIVE, reason)

    def freeze_account(self, caller: Caller, tenant_id: str, account_id: str, *, reason: str) -> dict[str, Any]:
        return self._change(_ACCOUNT, caller, tenant_id, account_id, ACTIVE, FROZEN, reason)

    def unfreeze_account(self, caller: Caller, tenant_id: str, account_id: str, *, reason: str) -> dict[str, Any]:
        return self._change(_ACCOUNT, caller, tenant_id, account_id, FROZEN, ACTIVE, reason)

    def _change(
        self,
        subject: _Subject,
        caller: Caller,
        tenant_id: str,
        subject_id: str,
        expected: str,
        status: str,
        reason: str,
    ) -> dict[str, Any]:
        _check_transition(subject, subject.load(tenant_id, subject_id), subject_id, expected, status)
        change = store.StatusChange(tenant_id, subject_id, expected, status, reason, caller.actor, now_rfc3339())
        view = {
            "tenant_id": tenant_id,
            f"{subject.kind}_id": subject_id,
            "status": status.lower(),
            "previous_status": expected.lower(),
            "reason": reason,
            "changed_by": caller.actor,
            "changed_at": change.at,
        }
        action = f"{subject.kind}.{'frozen' if status == FROZEN else 'unfrozen'}"
        audit = audit_event(
            tenant_id=tenant_id,
            action=action,
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=subject_id,
            payload=view,
        )
        try:
            subject.write(change, audit)
        except store.StatusMoved:
            # Changed (or created) between the read and the write: tell the caller what it is now.
            _check_transition(subject, subject.load(tenant_id, subject_id), subject_id, expected, status)
            raise InvalidStateTransition(f"{subject.kind} {subject_id} changed meanwhile; retry") from None
        return view


def _check_transition(
    subject: _Subject, item: UserItem | AccountItem | None, subject_id: str, expected: str, status: str
) -> None:
    if item is None:
        raise NotFound(f"{subject.kind} {subject_id} not found")
    if isinstance(item, AccountItem) and item.kind != AccountKind.USER.value:
        raise ValidationFailed(
            f"account {subject_id} is a system account; only user accounts can be frozen",
            errors=[{"loc": ["path", "account_id"], "msg": "system accounts cannot be frozen"}],
        )
    if item.status == status:
        raise InvalidStateTransition(f"{subject.kind} {subject_id} is already {status.lower()}")
    if item.status != expected:
        raise InvalidStateTransition(f"{subject.kind} {subject_id} is {item.status.lower()}, not {expected.lower()}")


def refuse_frozen(tenant_id: str, account: AccountRef) -> None:
    """AccountNotActive when the user account or its user is not ACTIVE now. A read, so only a courtesy before an
    irreversible step (collecting a funding from outside): the posting's own ConditionChecks are the enforcement."""
    if account.kind is not AccountKind.USER:
        return
    item = account_store.find_account_item(tenant_id, account.account_id)
    if item is not None and item.status != ACTIVE:
        raise AccountNotActive(f"account {account.account_id} is {item.status.lower()}")
    user = account_store.find_user_item(tenant_id, account.user_id or "")
    if user is not None and user.status != ACTIVE:
        raise AccountNotActive(f"user {user.id} is {user.status.lower()}: their accounts can neither send nor receive")
