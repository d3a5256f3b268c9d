"""Point-in-time answers derived from the ledger alone (invariant 2): an account's balance at an instant is the sum of
its entries recorded at or before that instant (recorded_at: what the ledger knew by then).

The sum starts from the account's latest end-of-day snapshot of a day before the instant's day (itself a sum of
entries, see moncore.domain.snapshots) and adds the entries recorded from the next day's start up to the instant, so a
read costs one snapshot lookup plus at most a few days of entries instead of the account's whole history. Without a
snapshot it sums from the first entry: slower, same answer.
"""

from __future__ import annotations

from moncore.domain.snapshots import day_start, next_day
from moncore.domain.transactions import Balance, Phase
from moncore.store import ledger as ledger_store
from moncore.store import snapshots as snapshot_store


def balance_as_of(tenant_id: str, account_id: str, as_of: str) -> tuple[Balance, int]:
    """(balance, number of entries) of the account at `as_of` (normalised RFC 3339)."""
    base = snapshot_store.latest_before(tenant_id, account_id, as_of[:10])
    since = None if base is None else day_start(next_day(base.day))
    entries = list(ledger_store.account_entries(tenant_id, account_id, since=since, upto=as_of))
    balance = Balance.of_legs((Phase(e.phase), e.amount_minor) for e in entries)
    if base is None:
        return balance.checked(account_id), len(entries)
    return (base.balance + balance).checked(account_id), base.entry_count + len(entries)
