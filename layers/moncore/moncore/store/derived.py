"""Reads and guarded writes of derived items (balances, holds, snapshots, tier-limit counters) and exception records,
for the rebuild job.

A derived item is rewritten only if it still is what the job read before it scanned the ledger: the write is
conditional on the item's generation (a balance's version, a hold's last_seq), which every posting that touches the
item changes. A posting that lands while the job runs therefore makes the rewrite fail instead of being overwritten;
the job reports it as changed during the run. Nothing here touches the Ledger, Guards or Audit tables.
"""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.exceptions import DeleteError, PutError
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from moncore.store.models import BalanceItem, CounterItem, ExceptionItem, HoldItem, SnapshotItem, tenant_key

_CONDITION_FAILED = "ConditionalCheckFailedException"


def balance_items(keys: Iterable[str]) -> dict[str, BalanceItem]:
    """The existing balance items among `keys` (BatchGetItem, consistent reads); missing keys are absent."""
    return {item.pk: item for item in BalanceItem.batch_get(list(dict.fromkeys(keys)), consistent_read=True)}


def balance_item(key: str) -> BalanceItem | None:
    try:
        return BalanceItem.get(key, consistent_read=True)
    except BalanceItem.DoesNotExist:
        return None


def tenant_hold_items(tenant_id: str) -> list[HoldItem]:
    """Every hold row of the tenant: a Scan of the Holds table filtered by tenant (derived rows may exist for
    transactions the ledger does not justify, so they cannot be found by key)."""
    return list(HoldItem.scan(HoldItem.tenant_id == tenant_id, consistent_read=True))


def hold_item(key: str) -> HoldItem | None:
    try:
        return HoldItem.get(key, consistent_read=True)
    except HoldItem.DoesNotExist:
        return None


def snapshot_item(pk: str, day: str) -> SnapshotItem | None:
    try:
        return SnapshotItem.get(pk, day, consistent_read=True)
    except SnapshotItem.DoesNotExist:
        return None


def tenant_counter_items(tenant_id: str) -> list[CounterItem]:
    """Every tier-limit counter of the tenant (pk `tenant#user#...`): a Scan of the Counters table filtered by tenant
    and key prefix (the table also holds velocity items, `tenant#vel#...`, which are not limit counters)."""
    prefix = tenant_key(tenant_id, "user", "")
    condition = (CounterItem.tenant_id == tenant_id) & CounterItem.pk.startswith(prefix)
    return list(CounterItem.scan(condition, consistent_read=True))


def counter_item(key: str) -> CounterItem | None:
    try:
        return CounterItem.get(key, consistent_read=True)
    except CounterItem.DoesNotExist:
        return None


def put_counter_item(item: CounterItem, found_version: int | None) -> bool:
    """Overwrite the counter if it still has version `found_version` (None: if there is none): a posting charging it
    meanwhile changes the version, and wins."""
    condition = CounterItem.pk.does_not_exist() if found_version is None else CounterItem.version == found_version
    return _put_if(item, condition)


def delete_counter_item(key: str, found_version: int) -> bool:
    return _delete_if(CounterItem(key), CounterItem.version == found_version)


def put_balance_item(item: BalanceItem, found_version: int | None) -> bool:
    """Overwrite the balance item if it still has version `found_version` (None: if there is none). False when a
    posting changed it meanwhile."""
    condition = BalanceItem.pk.does_not_exist() if found_version is None else BalanceItem.version == found_version
    return _put_if(item, condition)


def delete_balance_item(key: str, found_version: int) -> bool:
    return _delete_if(BalanceItem(key), BalanceItem.version == found_version)


def put_hold_item(item: HoldItem, found_last_seq: int | None) -> bool:
    """Overwrite the hold row if it still reflects event `found_last_seq` (None: if there is none)."""
    condition = HoldItem.pk.does_not_exist() if found_last_seq is None else HoldItem.last_seq == found_last_seq
    return _put_if(item, condition)


def delete_hold_item(key: str, found_last_seq: int) -> bool:
    return _delete_if(HoldItem(key), HoldItem.last_seq == found_last_seq)


def delete_snapshot_item(pk: str, day: str) -> None:
    SnapshotItem(pk, day).delete()


def _put_if(item: Model, condition: Condition) -> bool:
    try:
        item.save(condition=condition)
    except PutError as error:
        if error.cause_response_code == _CONDITION_FAILED:
            return False
        raise
    return True


def _delete_if(item: Model, condition: Condition) -> bool:
    try:
        item.delete(condition=condition)
    except DeleteError as error:
        if error.cause_response_code == _CONDITION_FAILED:
            return False
        raise
    return True


def put_snapshot_item(item: SnapshotItem) -> None:
    """Snapshots have no concurrent writers but the jobs, which compute the same value: an unconditional put."""
    item.save()


def append_exception(item: ExceptionItem) -> None:
    """Append-only: creates the record, never overwrites one."""
    item.save(condition=ExceptionItem.pk.does_not_exist())


def run_records(pk: str) -> list[ExceptionItem]:
    """Every record of one rebuild run (its mismatches and its summary)."""
    return list(ExceptionItem.query(pk, consistent_read=True))
