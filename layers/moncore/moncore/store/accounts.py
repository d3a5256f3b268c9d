"""Users, accounts and balances. An account and its zero balance are created in one transaction, after a check that
the user exists (and is active) in the same tenant."""

from __future__ import annotations

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import AlreadyExists, NotFound
from moncore.domain.transactions import AccountKind, AccountRef
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import AccountItem, BalanceItem, CaseItem, GuardItem, UserItem, tenant_key
from moncore.store.transact import ConditionFailed, TxBuilder


def create_user(item: UserItem, audit: AuditEvent, *, case: tuple[CaseItem, AuditEvent] | None = None) -> None:
    """Raises AlreadyExists when the tenant already has a user with this external_ref. `case` (a possible sanctions
    screening match, moncore.compliance.screening.gate) is opened in the same transaction, with its audit event."""
    tx = TxBuilder()
    tx.put(
        "guard",
        GuardItem(
            tenant_key(item.tenant_id, "user_ref", item.external_ref), owner_id=item.id, created_at=item.created_at
        ),
        GuardItem.pk.does_not_exist(),
    )
    tx.put("user", item, UserItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    if case is not None:
        tx.put("case", case[0], CaseItem.pk.does_not_exist())
        tx.put("case_audit", audit_item(case[1]), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if failed.labels[0] == "guard":
            raise AlreadyExists(f"a user with external_ref '{item.external_ref}' already exists") from None
        raise


def find_user_item(tenant_id: str, user_id: str) -> UserItem | None:
    try:
        return UserItem.get(tenant_key(tenant_id, user_id), consistent_read=True)
    except UserItem.DoesNotExist:
        return None


def find_user_items(tenant_id: str, user_ids: list[str]) -> dict[str, UserItem]:
    """The given users of this tenant in one consistent BatchGetItem; missing ones are absent from the answer."""
    keys = [tenant_key(tenant_id, user_id) for user_id in dict.fromkeys(user_ids)]
    return {item.id: item for item in UserItem.batch_get(keys, consistent_read=True)}


def user_id_for_external_ref(tenant_id: str, external_ref: str) -> str | None:
    try:
        return GuardItem.get(tenant_key(tenant_id, "user_ref", external_ref), consistent_read=True).owner_id
    except GuardItem.DoesNotExist:
        return None


def create_account(item: AccountItem, audit: AuditEvent) -> None:
    """Raises NotFound when the user is not an active user of this tenant."""
    tx = TxBuilder()
    if item.user_id is not None:
        tx.check(
            "user",
            UserItem,
            tenant_key(item.tenant_id, item.user_id),
            UserItem.pk.exists() & (UserItem.status == "ACTIVE"),
        )
    tx.put("account", item, AccountItem.pk.does_not_exist())
    tx.put("balance", _zero_balance(item), BalanceItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if failed.labels[0] == "user":
            raise NotFound(f"user {item.user_id} not found") from None
        if failed.labels[0] in {"account", "balance"}:
            raise AlreadyExists(f"account {item.id} already exists") from None
        raise


def find_account_item(tenant_id: str, account_id: str) -> AccountItem | None:
    try:
        return AccountItem.get(tenant_key(tenant_id, account_id), consistent_read=True)
    except AccountItem.DoesNotExist:
        return None


def account_refs(tenant_id: str, account_ids: list[str]) -> dict[str, AccountRef]:
    """One BatchGetItem for the given accounts of this tenant; missing ones are simply absent from the answer."""
    keys = [tenant_key(tenant_id, account_id) for account_id in dict.fromkeys(account_ids)]
    return {item.id: to_ref(item) for item in AccountItem.batch_get(keys, consistent_read=True)}


def tenant_accounts(tenant_id: str) -> list[AccountItem]:
    """Every account of the tenant, user and system, in id order (GSI by_tenant: eventually consistent, so an account
    created in the last moment may be missing; the jobs that use it tolerate that)."""
    return list(AccountItem.by_tenant.query(tenant_id))


def user_accounts(tenant_id: str, user_id: str) -> list[AccountItem]:
    """The accounts of one user (the tenant index, filtered: an on-demand view, not a posting path)."""
    return list(AccountItem.by_tenant.query(tenant_id, filter_condition=AccountItem.user_id == user_id))


def to_ref(item: AccountItem) -> AccountRef:
    return AccountRef(
        account_id=item.id,
        currency=item.currency,
        kind=AccountKind(item.kind),
        user_id=item.user_id,
        shards=int(item.shards or 1),
    )


def ensure_system_account(item: AccountItem) -> None:
    """Create a tenant system account (and its balance) once; a concurrent or earlier creation is fine."""
    tx = TxBuilder()
    tx.put("account", item, AccountItem.pk.does_not_exist())
    tx.put("balance", _zero_balance(item), BalanceItem.pk.does_not_exist())
    try:
        tx.execute()
    except ConditionFailed:
        return


def _zero_balance(account: AccountItem) -> BalanceItem:
    """A new account's balance item: created with the account, in the same transaction, at zero."""
    return BalanceItem(
        account.pk,
        tenant_id=account.tenant_id,
        account_id=account.id,
        currency=account.currency,
        shard=0,
        posted_minor=0,
        pending_in_minor=0,
        pending_out_minor=0,
        available_minor=0,
        version=0,
        updated_at=account.created_at,
    )
