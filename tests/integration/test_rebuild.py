"""Rebuild and disaster recovery (issue 4): every balance, hold row and snapshot is recomputed from the ledger alone;
verify records one exception per mismatch, restore rewrites the derived tables, and after the derived tables of a
tenant are wiped, a restore makes the API answer exactly as before."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from tests.integration.helpers import idem, ledger_items, table_items
from tests.integration.ledger_scenario import (
    Scenario,
    api_answers,
    build_scenario,
    closing_now,
    day_after,
    ledger_legs,
    replay_balance,
)

pytestmark = pytest.mark.xdist_group("integration")

DERIVED_TABLES = {
    "MONCORE_BALANCES_TABLE": ("pk",),
    "MONCORE_HOLDS_TABLE": ("pk",),
    "MONCORE_SNAPSHOTS_TABLE": ("pk", "sk"),
}
WRITE_TIME = frozenset({"updated_at", "computed_at"})  # when an item was last written, not what the ledger says


def derived_items(tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    """The tenant's derived items per table, without their write times, in key order (plain boto3)."""
    found = {}
    for env, keys in DERIVED_TABLES.items():
        items = [
            {name: value for name, value in item.items() if name not in WRITE_TIME}
            for item in table_items(env)
            if item.get("tenant_id") == tenant_id
        ]
        found[env] = sorted(items, key=lambda item: tuple(item[k] for k in keys))
    return found


def wipe_derived(tenant_id: str) -> int:
    """Delete every derived item of the tenant, as a lost or corrupted table would leave it."""
    deleted = 0
    for env, keys in DERIVED_TABLES.items():
        table = boto3.resource("dynamodb").Table(os.environ[env])
        for item in table_items(env):
            if item.get("tenant_id") == tenant_id:
                table.delete_item(Key={k: item[k] for k in keys})
                deleted += 1
    return deleted


def run_records(tenant_id: str, run_id: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_EXCEPTIONS_TABLE"])
    return list(table.query(KeyConditionExpression=Key("pk").eq(f"{tenant_id}#{run_id}"), ConsistentRead=True)["Items"])


def add_to_balance(tenant_id: str, account_id: str, delta_minor: int) -> None:
    """Corrupt a balance item the way a bug would: posted and available moved, version untouched."""
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_BALANCES_TABLE"])
    table.update_item(
        Key={"pk": f"{tenant_id}#{account_id}"},
        UpdateExpression="ADD posted_minor :d, available_minor :d",
        ExpressionAttributeValues={":d": delta_minor},
    )


def append_only_items(tenant_id: str) -> list[Any]:
    audit = [i for i in table_items("MONCORE_AUDIT_TABLE") if i.get("tenant_id") == tenant_id]
    return sorted(ledger_items(tenant_id), key=lambda i: (i["pk"], i["sk"])) + sorted(audit, key=lambda i: i["sk"])


@pytest.fixture(scope="module")
def scenario(call: Any, admin_key: str) -> Scenario:
    return build_scenario(call, admin_key, "Rebuild")


def test_wiped_derived_tables_are_restored_and_the_api_answers_exactly_as_before(call: Any, scenario: Scenario) -> None:
    from moncore.ledger.rebuild import RebuildService
    from moncore.ledger.snapshots import SnapshotService

    tenant_id = scenario.tenant.id
    legs = ledger_legs(tenant_id)
    now = closing_now(legs)  # the next morning: the last day is closed and has its snapshots
    SnapshotService().snapshot(tenant_id, now=now)
    instants = [legs[len(legs) // 2]["recorded_at"], f"{day_after(legs[-1]['recorded_at'][:10])}T06:00:00.000000Z"]
    before = api_answers(call, scenario, instants)
    stored_before = derived_items(tenant_id)
    holds = stored_before["MONCORE_HOLDS_TABLE"]
    assert sorted(h["status"] for h in holds) == ["AUTHORIZED", "REVERSED", "SETTLED"]
    assert len(stored_before["MONCORE_SNAPSHOTS_TABLE"]) >= len(scenario.accounts) - 1
    assert any(int(b["shard"]) > 0 for b in stored_before["MONCORE_BALANCES_TABLE"])  # the hot clearing account
    service = RebuildService()

    clean = service.run(tenant_id, "verify", now=now)
    assert clean.mismatches == []
    counters = [i for i in table_items("MONCORE_COUNTERS_TABLE") if i["pk"].startswith(f"{tenant_id}#user#")]
    assert clean.checked == {
        "balance": len(stored_before["MONCORE_BALANCES_TABLE"]),
        "hold": 3,
        "snapshot": len(stored_before["MONCORE_SNAPSHOTS_TABLE"]),
        "counter": len(counters),  # tier-limit day and month counters of the payers (tests/integration/test_kyc.py)
    }
    assert counters
    assert [r["sk"] for r in run_records(tenant_id, clean.run_id)] == ["RUN"]

    # One corrupted balance item: exactly that mismatch, as one exception record.
    account_id = scenario.accounts[0]
    add_to_balance(tenant_id, account_id, 1)
    found = service.run(tenant_id, "verify", now=now)
    key = f"{tenant_id}#{account_id}"
    assert [(m.kind, m.key, m.outcome) for m in found.mismatches] == [("balance", key, "reported")]
    mismatch = found.mismatches[0]
    assert mismatch.expected is not None and mismatch.found is not None
    assert mismatch.found["posted_minor"] == mismatch.expected["posted_minor"] + 1
    assert {k: v for k, v in mismatch.found.items() if k not in ("posted_minor", "available_minor")} == {
        k: v for k, v in mismatch.expected.items() if k not in ("posted_minor", "available_minor")
    }
    records = {r["sk"]: r for r in run_records(tenant_id, found.run_id)}
    assert sorted(records) == ["RUN", f"balance#{key}"]
    record = records[f"balance#{key}"]
    assert (record["kind"], record["key"], record["run_id"], record["mode"]) == ("balance", key, found.run_id, "verify")
    assert json.loads(record["expected"]) == mismatch.expected and json.loads(record["found"]) == mismatch.found
    assert record["outcome"] == "reported" and record["detected_at"].endswith("Z")

    # Disaster: the derived tables of the tenant are gone. The API cannot answer ...
    ledger_before = append_only_items(tenant_id)
    wiped = wipe_derived(tenant_id)
    assert call("GET", f"/v1/accounts/{account_id}", key=scenario.tenant.key).status == 404

    # ... until the restore rebuilds every derivation from the ledger alone.
    restored = service.run(tenant_id, "restore", now=now)
    assert restored.counts() == {"reported": 0, "restored": wiped, "changed_during_run": 0}
    assert all(m.outcome == "restored" and m.found is None for m in restored.mismatches)
    assert api_answers(call, scenario, instants) == before
    assert derived_items(tenant_id) == stored_before  # balances (every shard), hold rows and snapshots
    assert append_only_items(tenant_id) == ledger_before  # the ledger and audit are only read
    assert service.run(tenant_id, "verify", now=now).mismatches == []


def posting_during_the_run(post: Any) -> Any:
    """A derivation that derives nothing and, while the job computes (after it read the stored items and the ledger),
    lets a partner post a transfer: the ledger the job read lacks it, the balance item has it."""
    from moncore.ledger.rebuild import Derivation, Derived, TenantLedger

    class PostingAfterTheLedgerRead(Derivation):
        kind = "posting"

        def stored(self, tenant_id: str, accounts: Sequence[Any], now: str) -> dict[str, Derived]:
            return {}

        def expected(self, ledger: TenantLedger) -> dict[str, Derived]:
            post()
            return {}

        def reread(self, key: str) -> Derived | None:
            return None

        def write(self, key: str, expected: Derived | None, found: Derived | None, at: str) -> bool:
            return True

    return PostingAfterTheLedgerRead()


def test_restore_never_overwrites_a_posting_made_during_the_run(call: Any, scenario: Scenario) -> None:
    from moncore.ledger.rebuild import BalanceDerivation, RebuildService

    tenant_id, payer, payee = scenario.tenant.id, scenario.accounts[0], scenario.accounts[1]
    add_to_balance(tenant_id, payer, 7)  # something for the restore to fix
    version_before = call("GET", f"/v1/accounts/{payer}", key=scenario.tenant.key).json()["balance"]["version"]

    def post() -> None:
        body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 100, "currency": "EUR"}
        assert call("POST", "/v1/transfers", key=scenario.tenant.key, headers=idem(), json=body).status == 201

    first = RebuildService([posting_during_the_run(post), BalanceDerivation()]).run(tenant_id, "restore")
    outcomes = {m.key: m.outcome for m in first.mismatches}
    assert outcomes[f"{tenant_id}#{payer}"] == "changed_during_run"
    legs = ledger_legs(tenant_id)
    honest = replay_balance(legs, payer, legs[-1]["recorded_at"])
    payer_now = call("GET", f"/v1/accounts/{payer}", key=scenario.tenant.key).json()["balance"]
    # The transfer is in the balance (not overwritten by the older recomputation); the corruption is still there.
    assert payer_now["posted_minor"] == honest["posted_minor"] + 7 and payer_now["version"] == version_before + 1

    second = RebuildService([BalanceDerivation()]).run(tenant_id, "restore")
    assert [(m.key, m.outcome) for m in second.mismatches] == [(f"{tenant_id}#{payer}", "restored")]
    payer_now = call("GET", f"/v1/accounts/{payer}", key=scenario.tenant.key).json()["balance"]
    assert payer_now["posted_minor"] == honest["posted_minor"]


def test_modes_other_than_verify_and_restore_are_refused(scenario: Scenario) -> None:
    from moncore.domain.errors import ValidationFailed
    from moncore.ledger.rebuild import RebuildService

    with pytest.raises(ValidationFailed):
        RebuildService().run(scenario.tenant.id, "repair")
