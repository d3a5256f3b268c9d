"""End-of-day balance snapshots as pure functions: day boundaries and the day-by-day fold of ledger entries.

A snapshot of an account for day D is the balance its entries add up to when D is over: every entry with
recorded_at < D+1 00:00:00Z (UTC), i.e. what the ledger knew by the end of D. It also carries how many entries that is
and the entry_sk of the last one, so a reader can check it continues exactly where the snapshot stops.

Snapshots exist only for days on which the account has entries (an "activity day"): on a quiet day the end-of-day state
is the previous snapshot's, so writing it again would add nothing but items. Which snapshots exist is therefore a
function of the ledger alone (and of which days are closed), which is what lets the rebuild job recompute them.

A day is closed once its end is `SETTLE_MARGIN` in the past: a posting takes its recorded_at before its write commits
(at most a Lambda timeout later), so a day snapshotted right at midnight could still gain entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from moncore.domain.errors import InvariantViolation, ValidationFailed
from moncore.domain.transactions import Balance, Phase

SETTLE_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """What a snapshot needs of a ledger entry (a leg on the account)."""

    entry_sk: str  # <recorded_at>#<txn_id>#<seq>#<leg>: sorts in recorded order, begins with the recorded day
    phase: Phase
    amount_minor: int

    @property
    def day(self) -> str:
        return self.entry_sk[:10]


@dataclass(frozen=True, slots=True)
class Snapshot:
    account_id: str
    currency: str
    day: str  # YYYY-MM-DD (UTC): the state at the end of this day
    balance: Balance
    entry_count: int  # entries recorded up to the end of `day`, since the account's first
    last_entry_sk: str  # the last of them


def check_day(text: str, *, field: str = "date") -> str:
    """A calendar day written YYYY-MM-DD; anything else is a 422."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise ValidationFailed(
            f"{field} must be a day written YYYY-MM-DD", errors=[{"loc": [field], "msg": "YYYY-MM-DD"}]
        ) from None


def day_start(day: str) -> str:
    """The first instant of `day` in the stored time format (RFC 3339 UTC, microseconds, Z)."""
    return f"{day}T00:00:00.000000Z"


def day_end(day: str) -> str:
    """The last representable instant of `day`: recorded_at <= day_end(D) exactly when recorded_at < D+1 00:00."""
    return f"{day}T23:59:59.999999Z"


def next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def previous_day(day: str) -> str:
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


def last_closed_day(now: str, margin: timedelta = SETTLE_MARGIN) -> str:
    """The latest day D whose end (D+1 00:00Z) lies at least `margin` before `now` (a stored-format instant)."""
    moment = datetime.fromisoformat(now.replace("Z", "+00:00")).astimezone(UTC)
    return ((moment - margin).date() - timedelta(days=1)).isoformat()


def fold_days(
    account_id: str,
    currency: str,
    entries: Iterable[SnapshotEntry],
    *,
    start: Snapshot | None,
    through_day: str,
) -> list[Snapshot]:
    """One snapshot per activity day after `start` (None: the account's beginning) up to `through_day` inclusive.

    `entries` are the account's entries after `start`, in entry_sk order; those of later days are ignored. Raises
    InvariantViolation if they are out of order or overlap `start`: a snapshot built on them would be wrong."""
    balance = start.balance if start else Balance()
    count = start.entry_count if start else 0
    last_sk = start.last_entry_sk if start else ""
    after_day = start.day if start else ""
    snapshots: list[Snapshot] = []
    current_day: str | None = None
    for entry in entries:
        if entry.day > through_day:
            break
        if entry.entry_sk <= last_sk or entry.day <= after_day:
            raise InvariantViolation(f"entry {entry.entry_sk} of {account_id} is out of order for a snapshot")
        if current_day is not None and entry.day != current_day:
            snapshots.append(Snapshot(account_id, currency, current_day, balance.checked(account_id), count, last_sk))
        current_day = entry.day
        balance = balance + Balance.of_legs([(entry.phase, entry.amount_minor)])
        count += 1
        last_sk = entry.entry_sk
    if current_day is not None:
        snapshots.append(Snapshot(account_id, currency, current_day, balance.checked(account_id), count, last_sk))
    return snapshots
