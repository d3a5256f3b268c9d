"""End-of-day snapshots as pure functions: day boundaries, the day-by-day fold, and continuing from a snapshot."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from moncore.domain.errors import InvariantViolation, ValidationFailed
from moncore.domain.snapshots import (
    SnapshotEntry,
    check_day,
    day_end,
    day_start,
    fold_days,
    last_closed_day,
    next_day,
    previous_day,
)
from moncore.domain.transactions import Balance, Phase


def entry(recorded_at: str, phase: Phase, amount_minor: int, txn: str = "txn_1", leg: int = 1) -> SnapshotEntry:
    return SnapshotEntry(f"{recorded_at}#{txn}#0001#{leg:02d}", phase, amount_minor)


START = datetime(2026, 5, 1, tzinfo=UTC)
ENTRIES = [
    entry("2026-03-01T09:00:00.000000Z", Phase.SETTLED, 10_000),
    entry("2026-03-01T23:59:59.999999Z", Phase.AUTHORIZED, -2_000),
    entry("2026-03-02T00:00:00.000000Z", Phase.RELEASED, 500),  # first instant of the next day
    entry("2026-03-04T12:00:00.000000Z", Phase.SETTLED, -1_500),
]


def test_one_snapshot_per_activity_day_with_the_running_balance() -> None:
    snapshots = fold_days("acc", "EUR", ENTRIES, start=None, through_day="2026-03-04")
    assert [s.day for s in snapshots] == ["2026-03-01", "2026-03-02", "2026-03-04"]  # no snapshot for a quiet day
    assert [s.balance for s in snapshots] == [
        Balance(10_000, 0, 2_000, 8_000),
        Balance(10_000, 0, 1_500, 8_500),
        Balance(8_500, 0, 1_500, 7_000),
    ]
    assert [s.entry_count for s in snapshots] == [2, 3, 4]
    assert [s.last_entry_sk for s in snapshots] == [e.entry_sk for e in (ENTRIES[1], ENTRIES[2], ENTRIES[3])]
    assert {(s.account_id, s.currency) for s in snapshots} == {("acc", "EUR")}


def test_days_after_the_last_closed_one_are_left_out() -> None:
    snapshots = fold_days("acc", "EUR", ENTRIES, start=None, through_day="2026-03-03")
    assert [s.day for s in snapshots] == ["2026-03-01", "2026-03-02"]


def test_continuing_from_any_snapshot_gives_what_a_fold_from_scratch_gives() -> None:
    rng = random.Random(7)
    entries, moment, balance_in = [], 0, 0
    for index in range(300):
        moment += rng.randint(1, 40_000)
        recorded = (START + timedelta(seconds=moment)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        amount = rng.randint(1, 900)
        if balance_in > amount and rng.random() < 0.4:
            entries.append(entry(recorded, Phase.SETTLED, -amount, txn=f"t{index}"))
            balance_in -= amount
        else:
            entries.append(entry(recorded, Phase.SETTLED, amount, txn=f"t{index}"))
            balance_in += amount
    through = entries[-1].day
    scratch = fold_days("acc", "EUR", entries, start=None, through_day=through)
    assert len(scratch) > 20
    for start in scratch[:-1]:
        later = [e for e in entries if e.day > start.day]
        assert fold_days("acc", "EUR", later, start=start, through_day=through) == [
            s for s in scratch if s.day > start.day
        ]
    assert scratch[-1].balance.posted_minor == sum(e.amount_minor for e in entries)
    assert scratch[-1].entry_count == len(entries)


def test_entries_that_overlap_the_start_or_go_backwards_are_refused() -> None:
    (first, *_) = fold_days("acc", "EUR", ENTRIES, start=None, through_day="2026-03-01")
    with pytest.raises(InvariantViolation):
        fold_days("acc", "EUR", ENTRIES, start=first, through_day="2026-03-04")  # re-adds day 1
    with pytest.raises(InvariantViolation):
        fold_days("acc", "EUR", [ENTRIES[2], ENTRIES[0]], start=None, through_day="2026-03-04")


def test_day_boundaries_compare_like_recorded_at() -> None:
    assert day_start("2026-03-02") == "2026-03-02T00:00:00.000000Z"
    assert "2026-03-01T23:59:59.999999Z" <= day_end("2026-03-01") < day_start("2026-03-02")
    assert next_day("2026-02-28") == "2026-03-01" and next_day("2028-02-28") == "2028-02-29"
    assert previous_day("2026-01-01") == "2025-12-31"


def test_a_day_closes_a_settle_margin_after_midnight() -> None:
    assert last_closed_day("2026-03-02T00:09:59.999999Z") == "2026-02-28"
    assert last_closed_day("2026-03-02T00:10:00.000000Z") == "2026-03-01"
    assert last_closed_day("2026-03-02T23:00:00.000000Z") == "2026-03-01"


@pytest.mark.parametrize("text", ["2026-3-1", "2026-02-30", "yesterday", "2026-03-01T00:00:00Z", ""])
def test_days_must_be_written_yyyy_mm_dd(text: str) -> None:
    with pytest.raises(ValidationFailed):
        check_day(text)
    assert check_day("2026-03-01") == "2026-03-01"
