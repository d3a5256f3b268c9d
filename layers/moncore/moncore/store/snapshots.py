"""Snapshot items (derived, mutable): one per account and UTC day on which the account has entries.

Only the snapshot and rebuild jobs write them; readers (as_of) take the latest one before an instant's day and add the
entries after it. A snapshot that is absent only costs a longer read, never a wrong answer.
"""

from __future__ import annotations

from moncore.domain.money import stored_minor
from moncore.domain.snapshots import Snapshot
from moncore.domain.transactions import Balance
from moncore.store.models import SnapshotItem, tenant_key


def snapshot_item(tenant_id: str, snapshot: Snapshot, computed_at: str) -> SnapshotItem:
    balance = snapshot.balance
    return SnapshotItem(
        tenant_key(tenant_id, snapshot.account_id),
        snapshot.day,
        tenant_id=tenant_id,
        account_id=snapshot.account_id,
        currency=snapshot.currency,
        posted_minor=balance.posted_minor,
        pending_in_minor=balance.pending_in_minor,
        pending_out_minor=balance.pending_out_minor,
        available_minor=balance.available_minor,
        entry_count=snapshot.entry_count,
        last_entry_sk=snapshot.last_entry_sk,
        computed_at=computed_at,
    )


def to_snapshot(item: SnapshotItem) -> Snapshot:
    balance = Balance(
        stored_minor(item.posted_minor),
        stored_minor(item.pending_in_minor),
        stored_minor(item.pending_out_minor),
        stored_minor(item.available_minor),
    )
    return Snapshot(
        account_id=item.account_id,
        currency=item.currency,
        day=item.sk,
        balance=balance.checked(f"snapshot {item.pk} {item.sk}"),
        entry_count=stored_minor(item.entry_count),
        last_entry_sk=item.last_entry_sk,
    )


def put_snapshot(tenant_id: str, snapshot: Snapshot, computed_at: str) -> None:
    """Overwrite the snapshot of (account, day): it is a function of the ledger, so rewriting it is always safe."""
    snapshot_item(tenant_id, snapshot, computed_at).save()


def delete_snapshot(tenant_id: str, account_id: str, day: str) -> None:
    SnapshotItem(tenant_key(tenant_id, account_id), day).delete()


def latest_before(tenant_id: str, account_id: str, day: str) -> Snapshot | None:
    """The account's latest snapshot of a day strictly before `day` (consistent read), or None."""
    query = SnapshotItem.query(
        tenant_key(tenant_id, account_id),
        SnapshotItem.sk < day,
        scan_index_forward=False,
        limit=1,
        consistent_read=True,
    )
    item = next(iter(query), None)
    return None if item is None else to_snapshot(item)


def account_snapshots(tenant_id: str, account_id: str) -> list[SnapshotItem]:
    """Every stored snapshot item of the account, oldest day first (consistent read)."""
    return list(SnapshotItem.query(tenant_key(tenant_id, account_id), consistent_read=True))
