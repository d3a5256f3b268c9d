"""End-of-day snapshots and point-in-time reads (issue 3): `?as_of=` on balances and entries answers what a replay of
the ledger up to that instant gives, with and without snapshots, and snapshots are derived from entries only."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest

from tests.integration.helpers import table_items
from tests.integration.ledger_scenario import (
    Scenario,
    account_answer,
    build_scenario,
    closing_now,
    day_after,
    entries_answer,
    entry_tuples,
    ledger_legs,
    replay_balance,
    replay_entries,
    shift,
)

pytestmark = pytest.mark.xdist_group("integration")

PARTS = ("posted_minor", "pending_in_minor", "pending_out_minor", "available_minor", "version")


@pytest.fixture(scope="module")
def scenario(call: Any, admin_key: str) -> Scenario:
    return build_scenario(call, admin_key, "Snapshots")


def instants_to_check(legs: list[dict[str, Any]]) -> list[str]:
    """Before any entry, just before / exactly at / just after entries, now, and after the snapshot's day closed."""
    first, last = legs[0]["recorded_at"], legs[-1]["recorded_at"]
    middle = legs[len(legs) // 2]["recorded_at"]
    next_midnight = f"{day_after(last[:10])}T00:00:00.000000Z"
    return [
        "2000-01-01T00:00:00.000000Z",
        shift(first, microseconds=-1),
        first,
        shift(middle, microseconds=-1),
        middle,
        shift(middle, microseconds=1),
        last,
        shift(next_midnight, microseconds=-1),
        next_midnight,  # the first instant a snapshot of the last day can serve
        shift(next_midnight, hours=12),
    ]


def assert_as_of_matches_replay(
    call: Any, scenario: Scenario, legs: list[dict[str, Any]], instant: str, *, entries: bool = True
) -> None:
    for account_id in scenario.accounts:
        got = account_answer(call, scenario.tenant, account_id, instant)["balance"]
        assert {part: got[part] for part in PARTS} == replay_balance(legs, account_id, instant), (account_id, instant)
        assert got["pending_minor"] == got["pending_in_minor"] - got["pending_out_minor"]
        assert got["as_of"] == instant
        if not entries:
            continue
        listed = entries_answer(call, scenario.tenant, account_id, instant)
        assert entry_tuples(listed) == replay_entries(legs, account_id, instant), (account_id, instant)


def snapshot_items(tenant_id: str) -> list[dict[str, Any]]:
    return [item for item in table_items("MONCORE_SNAPSHOTS_TABLE") if item["tenant_id"] == tenant_id]


def test_as_of_equals_a_replay_of_the_ledger_with_and_without_snapshots(call: Any, scenario: Scenario) -> None:
    from moncore.ledger.snapshots import SnapshotService

    legs = ledger_legs(scenario.tenant.id)
    instants = instants_to_check(legs)
    for instant in instants:
        assert_as_of_matches_replay(call, scenario, legs, instant)

    run = SnapshotService().snapshot(scenario.tenant.id, now=closing_now(legs))
    assert run.day == legs[-1]["recorded_at"][:10] and run.accounts == len(scenario.accounts)
    assert run.written >= len(scenario.accounts) - 1  # every account with entries; the idle one has none
    for instant in instants:  # entry lists never read snapshots: balances only
        assert_as_of_matches_replay(call, scenario, legs, instant, entries=False)


def test_snapshots_hold_what_the_entries_of_each_day_add_up_to(call: Any, scenario: Scenario) -> None:
    from moncore.domain.errors import ValidationFailed
    from moncore.ledger.snapshots import SnapshotService

    legs = ledger_legs(scenario.tenant.id)
    service = SnapshotService()
    last_day = legs[-1]["recorded_at"][:10]
    with pytest.raises(ValidationFailed):  # the day is not over: entries may still arrive
        service.snapshot(scenario.tenant.id, last_day)
    service.snapshot(scenario.tenant.id, last_day, now=closing_now(legs))
    first = sorted(snapshot_items(scenario.tenant.id), key=lambda i: (i["account_id"], i["sk"]))
    service.snapshot(scenario.tenant.id, last_day, now=closing_now(legs))  # a rerun rewrites the same values
    again = sorted(snapshot_items(scenario.tenant.id), key=lambda i: (i["account_id"], i["sk"]))
    assert [{k: v for k, v in i.items() if k != "computed_at"} for i in first] == [
        {k: v for k, v in i.items() if k != "computed_at"} for i in again
    ]

    expected = []
    for account_id in scenario.accounts:
        days = sorted({leg["recorded_at"][:10] for leg in legs if leg["account_id"] == account_id})
        for day in days:
            end = f"{day}T23:59:59.999999Z"
            parts = replay_balance(legs, account_id, end)
            last_sk = max(leg["entry_sk"] for leg in legs if leg["account_id"] == account_id and leg["entry_sk"] < end)
            expected.append((account_id, day, *(parts[p] for p in PARTS[:4]), parts["version"], last_sk))
    stored = [
        (
            i["account_id"],
            i["sk"],
            int(i["posted_minor"]),
            int(i["pending_in_minor"]),
            int(i["pending_out_minor"]),
            int(i["available_minor"]),
            int(i["entry_count"]),
            i["last_entry_sk"],
        )
        for i in first
    ]
    assert sorted(stored) == sorted(expected)
    assert not [i for i in first if i["account_id"] == scenario.idle]  # no entries, no snapshot
    assert {i["currency"] for i in first} == {"EUR"}


def test_as_of_starts_from_the_latest_snapshot_before_the_instant(call: Any, scenario: Scenario) -> None:
    """Proof that the snapshot is used (and only after its day): tamper with one, as_of after its day shows it,
    as_of within its day does not; the rebuild job finds the tampered snapshot and restores it."""
    from moncore.ledger.rebuild import RebuildService
    from moncore.ledger.snapshots import SnapshotService

    legs = ledger_legs(scenario.tenant.id)
    now = closing_now(legs)
    SnapshotService().snapshot(scenario.tenant.id, now=now)
    account_id = scenario.accounts[0]
    day = max(leg["recorded_at"][:10] for leg in legs if leg["account_id"] == account_id)
    later, within = f"{day_after(day)}T06:00:00.000000Z", legs[-1]["recorded_at"]
    honest = replay_balance(legs, account_id, later)

    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_SNAPSHOTS_TABLE"])
    table.update_item(
        Key={"pk": f"{scenario.tenant.id}#{account_id}", "sk": day},
        UpdateExpression="ADD posted_minor :d, available_minor :d",
        ExpressionAttributeValues={":d": 1_000_000},
    )
    tampered = account_answer(call, scenario.tenant, account_id, later)["balance"]
    assert tampered["posted_minor"] == honest["posted_minor"] + 1_000_000
    untouched = account_answer(call, scenario.tenant, account_id, within)["balance"]
    assert untouched["posted_minor"] == replay_balance(legs, account_id, within)["posted_minor"]

    report = RebuildService().run(scenario.tenant.id, "verify", now=now)
    assert [(m.kind, m.key, m.outcome) for m in report.mismatches] == [
        ("snapshot", f"{scenario.tenant.id}#{account_id}#{day}", "reported")
    ]
    RebuildService().run(scenario.tenant.id, "restore", now=now)
    restored = account_answer(call, scenario.tenant, account_id, later)["balance"]
    assert {part: restored[part] for part in PARTS} == honest
