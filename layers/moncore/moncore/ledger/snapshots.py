"""The end-of-day snapshot job: for every account of a tenant, fold the ledger entries of closed days into snapshots.

Each account's snapshots continue from its latest snapshot before the requested day (or from its first entry), so a
run for day D also writes the snapshots of earlier activity days a missed run left out. Snapshots are derived only
from ledger entries, never from the Balances table (invariant 2); the rebuild job recomputes and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import ValidationFailed
from moncore.domain.snapshots import (
    Snapshot,
    SnapshotEntry,
    check_day,
    day_end,
    day_start,
    fold_days,
    last_closed_day,
    next_day,
)
from moncore.domain.transactions import Phase
from moncore.store import accounts as account_store
from moncore.store import ledger as ledger_store
from moncore.store import snapshots as snapshot_store
from moncore.store.ledger import StoredEntry


@dataclass(frozen=True, slots=True)
class SnapshotRun:
    tenant_id: str
    day: str
    accounts: int
    written: int

    def as_dict(self) -> dict[str, object]:
        return {"date": self.day, "accounts": self.accounts, "snapshots_written": self.written}


def as_snapshot_entry(entry: StoredEntry) -> SnapshotEntry:
    return SnapshotEntry(entry.entry_sk, Phase(entry.phase), entry.amount_minor)


class SnapshotService:
    def snapshot(self, tenant_id: str, day: str | None = None, *, now: str | None = None) -> SnapshotRun:
        """Write the snapshots of every account of the tenant up to the end of `day` (default: the last closed day).
        A day that is not closed yet is refused: entries may still arrive for it."""
        moment = now or now_rfc3339()
        closed = last_closed_day(moment)
        target = closed if day is None else check_day(day)
        if target > closed:
            raise ValidationFailed(
                f"day {target} is not closed yet; the latest day that can be snapshotted is {closed}",
                errors=[{"loc": ["date"], "msg": f"at most {closed}"}],
            )
        accounts = account_store.tenant_accounts(tenant_id)
        written = 0
        for account in accounts:
            for snapshot in self.account_snapshots(tenant_id, account.id, account.currency, target):
                snapshot_store.put_snapshot(tenant_id, snapshot, moment)
                written += 1
        return SnapshotRun(tenant_id, target, len(accounts), written)

    @staticmethod
    def account_snapshots(tenant_id: str, account_id: str, currency: str, day: str) -> list[Snapshot]:
        """The account's snapshots of the activity days after its latest snapshot before `day`, through `day`."""
        start = snapshot_store.latest_before(tenant_id, account_id, day)
        since = day_start(next_day(start.day)) if start else None
        entries = ledger_store.account_entries(tenant_id, account_id, since=since, upto=day_end(day))
        return fold_days(account_id, currency, (as_snapshot_entry(e) for e in entries), start=start, through_day=day)
