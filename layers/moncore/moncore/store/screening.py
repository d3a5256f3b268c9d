"""Screening storage: audited checks, tenants' custom watchlists, officers' false-positive decisions, and users'
screening status. Every change is one TransactWriteItems with its audit event(s) (the Screening table, the Users
table, and for a new screening case the Cases table).

Items (Screening table, mutable; models.WatchlistItem / FalsePositiveItem):
- `tenant#watchlist` / `meta`: the watchlist's version, ADDed by 1 in the transaction of every entry change;
- `tenant#watchlist` / `entry#<id>`: one entry (active until deactivated);
- `tenant#false_positive` / `<user_id>#<list>#<entry_id>`: a remembered false positive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import AlreadyExists
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import CaseItem, FalsePositiveItem, UserItem, WatchlistItem, tenant_key
from moncore.store.transact import ConditionFailed, TxBuilder

META = "meta"
CLEAR = "clear"


def record_check(audit: AuditEvent) -> None:
    """A single conditional PutItem (never an overwrite): there is no other change to make atomic with it."""
    audit_item(audit).save(condition=append_condition())


# ---------------------------------------------------------------- watchlists
def watchlist_key(tenant_id: str) -> str:
    return tenant_key(tenant_id, "watchlist")


def entry_sk(entry_id: str) -> str:
    return f"entry#{entry_id}"


def read_watchlist(tenant_id: str) -> tuple[int, list[WatchlistItem]]:
    """The watchlist's version and every entry (active or not), from one consistent Query (paged): the version and
    the entries come from the same read, so a screening records the version of what it screened against (a change
    committed between two pages makes the recorded version older than some entry, and the next run screens again)."""
    version = 0
    entries: list[WatchlistItem] = []
    for item in WatchlistItem.query(watchlist_key(tenant_id), consistent_read=True):
        if item.sk == META:
            version = int(item.version or 0)
        else:
            entries.append(item)
    return version, entries


def find_watchlist_entry(tenant_id: str, entry_id: str) -> WatchlistItem | None:
    try:
        return WatchlistItem.get(watchlist_key(tenant_id), entry_sk(entry_id), consistent_read=True)
    except WatchlistItem.DoesNotExist:
        return None


def add_watchlist_entry(item: WatchlistItem, audit: AuditEvent) -> None:
    """The entry, the version bump and the audit event together; AlreadyExists when the entry id is taken."""
    tx = TxBuilder()
    tx.put("entry", item, WatchlistItem.sk.does_not_exist())
    _bump_version(tx, item.tenant_id, audit.recorded_at)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "entry" in failed.labels:
            raise AlreadyExists(f"watchlist entry {item.entry_id} already exists") from None
        raise


class EntryMoved(Exception):
    """The entry does not exist or is not active any more: re-read to tell which."""


def deactivate_watchlist_entry(tenant_id: str, entry_id: str, *, by: str, reason: str, audit: AuditEvent) -> None:
    tx = TxBuilder()
    tx.update(
        "entry",
        WatchlistItem(watchlist_key(tenant_id), entry_sk(entry_id)),
        [
            WatchlistItem.active.set(False),
            WatchlistItem.deactivated_by.set(by),
            WatchlistItem.deactivated_at.set(audit.recorded_at),
            WatchlistItem.deactivation_reason.set(reason),
        ],
        WatchlistItem.sk.exists() & (WatchlistItem.active == True),  # noqa: E712 - a DynamoDB condition, not a test
    )
    _bump_version(tx, tenant_id, audit.recorded_at)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise EntryMoved() from None


def _bump_version(tx: TxBuilder, tenant_id: str, at: str) -> None:
    tx.update(
        "version",
        WatchlistItem(watchlist_key(tenant_id), META),
        [WatchlistItem.version.add(1), WatchlistItem.tenant_id.set(tenant_id), WatchlistItem.updated_at.set(at)],
    )


# ---------------------------------------------------------------- false positives
def false_positive_key(tenant_id: str) -> str:
    return tenant_key(tenant_id, "false_positive")


def false_positive_item(
    tenant_id: str, user_id: str, list_name: str, entry_id: str, *, matched_name: str, case_id: str, by: str, at: str
) -> FalsePositiveItem:
    return FalsePositiveItem(
        false_positive_key(tenant_id),
        f"{user_id}#{list_name}#{entry_id}",
        tenant_id=tenant_id,
        user_id=user_id,
        list_name=list_name,
        entry_id=entry_id,
        matched_name=matched_name,
        case_id=case_id,
        decided_by=by,
        decided_at=at,
    )


def false_positives(tenant_id: str, user_id: str | None = None) -> dict[str, set[tuple[str, str]]]:
    """{user id: {(list, entry id)}} of the tenant's remembered false positives (one user's with `user_id`)."""
    condition = None if user_id is None else FalsePositiveItem.sk.startswith(f"{user_id}#")
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for item in FalsePositiveItem.query(false_positive_key(tenant_id), condition, consistent_read=True):
        found[item.user_id].add((item.list_name, item.entry_id))
    return dict(found)


# ---------------------------------------------------------------- users' screening status
def users_of_tenant(tenant_id: str) -> Iterator[UserItem]:
    """Every user of the tenant in id order (GSI by_tenant: eventually consistent, so a user created a moment ago
    may be missing; it was screened at creation, and every write below is conditional on what was read)."""
    return iter(UserItem.by_tenant.query(tenant_id))


@dataclass(frozen=True, slots=True)
class ScreeningUpdate:
    """A change of one user's screening state, conditional on the status (and lists version) it was decided from."""

    tenant_id: str
    user_id: str
    expected_status: str  # clear | pending_review | confirmed (clear also matches an item without the attribute)
    status: str
    screened_at: str | None = None
    lists_version: str | None = None  # None: left as is; "" removes it (the next rescreen screens the user again)
    case_id: str | None = None  # the user's open screening case from now on
    clear_case: bool = False  # remove the user's screening case id (the case was decided)
    expected_lists_version: str | None = None  # also require the stored lists version to be this one

    def actions(self) -> list[Action]:
        actions: list[Action] = [UserItem.screening_status.set(self.status)]
        if self.screened_at is not None:
            actions.append(UserItem.screened_at.set(self.screened_at))
        if self.lists_version == "":
            actions.append(UserItem.screening_lists_version.remove())
        elif self.lists_version is not None:
            actions.append(UserItem.screening_lists_version.set(self.lists_version))
        if self.case_id is not None:
            actions.append(UserItem.screening_case_id.set(self.case_id))
        elif self.clear_case:
            actions.append(UserItem.screening_case_id.remove())
        return actions

    def condition(self) -> Condition:
        if self.expected_status == CLEAR:
            status = UserItem.screening_status.does_not_exist() | (UserItem.screening_status == CLEAR)
        else:
            status = UserItem.screening_status == self.expected_status
        condition: Condition = UserItem.pk.exists() & status
        if self.expected_lists_version is not None:
            condition = condition & (UserItem.screening_lists_version == self.expected_lists_version)
        return condition


class ScreeningMoved(Exception):
    """The user's screening state changed since it was read (or the user is gone); nothing was written."""


def write_screening(
    update: ScreeningUpdate,
    audits: Sequence[AuditEvent],
    *,
    case: CaseItem | None = None,
    case_audit: AuditEvent | None = None,
    remembered: Sequence[FalsePositiveItem] = (),
) -> None:
    """The user's new screening state, its audit events, and (optionally) a new case and remembered false
    positives, in one transaction. Raises ScreeningMoved when the user's state is not the expected one, and
    AlreadyExists when the case exists already (the same screening opened it before: its ids derive from it)."""
    tx = TxBuilder()
    tx.update("user", UserItem(tenant_key(update.tenant_id, update.user_id)), update.actions(), update.condition())
    if case is not None:
        tx.put("case", case, CaseItem.pk.does_not_exist())
    for position, event in enumerate([*audits, *([case_audit] if case_audit else [])]):
        tx.put(f"audit{position}", audit_item(event), append_condition())
    for position, item in enumerate(remembered):
        tx.put(f"false_positive{position}", item)  # an overwrite keeps the same decision (a retry)
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "case" in failed.labels:
            raise AlreadyExists(f"case {case.id if case else ''} already exists") from None
        raise ScreeningMoved() from None
