"""Balance items: one per account shard (shard 0 keyed by the account itself), summed on read.

Shards exist for hot tenant system accounts (funding clearing, FX position, fees): every posting touching one picks a
shard, so concurrent postings rarely contend on the same item. The account's balance is the sum over all shards;
a shard that was never written reads as zero.
"""

from __future__ import annotations

from moncore.domain.errors import NotFound
from moncore.domain.money import stored_minor
from moncore.domain.transactions import AccountRef, Balance
from moncore.store.models import BalanceItem, tenant_key


def balance_key(tenant_id: str, account_id: str, shard: int) -> str:
    return tenant_key(tenant_id, account_id) if shard == 0 else tenant_key(tenant_id, account_id, str(shard))


def item_balance(item: BalanceItem) -> Balance:
    return Balance(
        stored_minor(item.posted_minor),
        stored_minor(item.pending_in_minor),
        stored_minor(item.pending_out_minor),
        stored_minor(item.available_minor),
    )


def shard_balances(tenant_id: str, account: AccountRef) -> dict[int, tuple[Balance, int]]:
    """(balance, version) per existing shard item, read consistently. NotFound when shard 0 is missing."""
    keys = [balance_key(tenant_id, account.account_id, shard) for shard in range(account.shards)]
    found: dict[int, tuple[Balance, int]] = {}
    for item in BalanceItem.batch_get(keys, consistent_read=True):
        found[int(item.shard or 0)] = (item_balance(item).checked(item.pk), stored_minor(item.version))
    if 0 not in found:
        raise NotFound(f"account {account.account_id} not found")
    return found


def read_balance(tenant_id: str, account: AccountRef) -> tuple[Balance, int]:
    """The account's balance (sum of shards) and its version (sum of shard versions: postings that touched it)."""
    total, version = Balance(), 0
    for balance, shard_version in shard_balances(tenant_id, account).values():
        total, version = total + balance, version + shard_version
    return total.checked(account.account_id), version
