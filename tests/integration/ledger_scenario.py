"""A tenant with every kind of ledger movement, an independent replay of its ledger, and the API's answers about it.

Shared by the snapshot/as_of and rebuild tests. The replay reads the Ledger table with plain boto3 and applies the
phase rules written out here again, so it does not trust the kernel code under test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.integration.helpers import Tenant, fund, idem, ledger_items, new_account, new_tenant, new_user

CLEARING = "sys_funding_clearing_eur"


@dataclass
class Scenario:
    tenant: Tenant
    accounts: list[str]  # user accounts (one never used) and the tenant's clearing account
    idle: str  # the account that never has an entry
    transactions: list[str] = field(default_factory=list)


def transfer(call: Any, tenant: Tenant, source: str, target: str, amount_minor: int, **extra: Any) -> dict[str, Any]:
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": amount_minor, "currency": "EUR"}
    made = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body | extra)
    assert made.status == 201, made.json()
    return dict(made.json())


def step(call: Any, tenant: Tenant, txn_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    done = call("POST", f"/v1/transactions/{txn_id}/{action}", key=tenant.key, headers=idem(), json=body)
    assert done.status in (200, 201), done.json()
    return dict(done.json())


def build_scenario(call: Any, admin_key: str, name: str) -> Scenario:
    """Fundings, auto transfers, a manual capture partly captured (still held), one voided, one fully captured and
    then partly reversed, and a partial reversal of an auto transfer."""
    tenant = new_tenant(call, admin_key, name)
    alice, bob = new_user(call, tenant), new_user(call, tenant)
    a, b, c = new_account(call, tenant, alice), new_account(call, tenant, bob), new_account(call, tenant, bob)
    idle = new_account(call, tenant, alice)
    scenario = Scenario(tenant, [a, b, c, idle, CLEARING], idle)
    txns = scenario.transactions
    txns.append(fund(call, tenant, a, 10_000)["id"])
    txns.append(fund(call, tenant, b, 5_000)["id"])
    first = transfer(call, tenant, a, b, 1_200)
    txns += [first["id"], transfer(call, tenant, b, c, 700)["id"]]
    partly = transfer(call, tenant, a, c, 2_000, capture="manual")
    step(call, tenant, partly["id"], "capture", {"amount_minor": 800})
    voided = transfer(call, tenant, b, a, 500, capture="manual")
    step(call, tenant, voided["id"], "void", {})
    captured = transfer(call, tenant, c, a, 300, capture="manual")
    step(call, tenant, captured["id"], "capture", {})
    txns += [partly["id"], voided["id"], captured["id"]]
    txns.append(step(call, tenant, captured["id"], "reverse", {"amount_minor": 100, "reason": "partial refund"})["id"])
    txns.append(step(call, tenant, first["id"], "reverse", {"amount_minor": 400, "reason": "refund"})["id"])
    return scenario


# -------------------------------------------------------------------- replay (independent of the kernel)
def ledger_legs(tenant_id: str) -> list[dict[str, Any]]:
    """Every leg of the tenant, in entry_sk (recorded) order."""
    legs = [item for item in ledger_items(tenant_id) if item["sk"].startswith("LEG#")]
    return sorted(legs, key=lambda item: item["entry_sk"])


def replay_balance(legs: Iterable[dict[str, Any]], account_id: str, as_of: str) -> dict[str, int]:
    """posted / pending_in / pending_out / available and the entry count at `as_of`, from the legs alone."""
    posted = pending_in = pending_out = available = count = 0
    for leg in legs:
        if leg["account_id"] != account_id or leg["recorded_at"] > as_of:
            continue
        amount, phase = int(leg["leg_amount_minor"]), leg["phase"]
        count += 1
        if phase == "SETTLED":
            posted, available = posted + amount, available + amount
        elif phase == "AUTHORIZED" and amount < 0:
            pending_out, available = pending_out - amount, available + amount
        elif phase == "AUTHORIZED":
            pending_in += amount
        elif phase == "RELEASED" and amount > 0:
            pending_out, available = pending_out - amount, available + amount
        elif phase == "RELEASED":
            pending_in += amount
        else:
            raise AssertionError(f"unknown phase {phase}")
    return {
        "posted_minor": posted,
        "pending_in_minor": pending_in,
        "pending_out_minor": pending_out,
        "available_minor": available,
        "version": count,
    }


def replay_entries(legs: Iterable[dict[str, Any]], account_id: str, as_of: str) -> list[tuple[Any, ...]]:
    return [
        (leg["txn_id"], int(leg["seq"]), int(leg["leg_amount_minor"]), leg["phase"], leg["recorded_at"])
        for leg in legs
        if leg["account_id"] == account_id and leg["recorded_at"] <= as_of
    ]


# -------------------------------------------------------------------- the API's answers
def account_answer(call: Any, tenant: Tenant, account_id: str, as_of: str | None = None) -> dict[str, Any]:
    got = call("GET", f"/v1/accounts/{account_id}", key=tenant.key, query={"as_of": as_of} if as_of else None)
    assert got.status == 200, got.json()
    return dict(got.json())


def entries_answer(call: Any, tenant: Tenant, account_id: str, as_of: str | None = None) -> list[dict[str, Any]]:
    """Every entry the API lists for the account (all pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": "200"} | ({"as_of": as_of} if as_of else {}) | ({"cursor": cursor} if cursor else {})
        page = call("GET", f"/v1/accounts/{account_id}/entries", key=tenant.key, query=query)
        assert page.status == 200, page.json()
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return items


def entry_tuples(items: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(i["txn_id"], i["seq"], i["amount_minor"], i["phase"], i["recorded_at"]) for i in items]


def api_answers(call: Any, scenario: Scenario, instants: Iterable[str]) -> dict[str, Any]:
    """What a partner sees: every account (now and at each instant), its entries, every transaction."""
    tenant, answers = scenario.tenant, {}
    for account_id in scenario.accounts:
        answers[f"account {account_id}"] = account_answer(call, tenant, account_id)
        answers[f"entries {account_id}"] = entries_answer(call, tenant, account_id)
        for instant in instants:
            answers[f"account {account_id} at {instant}"] = account_answer(call, tenant, account_id, instant)
            answers[f"entries {account_id} at {instant}"] = entries_answer(call, tenant, account_id, instant)
    for txn_id in scenario.transactions:
        got = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key)
        assert got.status == 200, got.json()
        answers[f"transaction {txn_id}"] = got.json()
    return answers


# -------------------------------------------------------------------- instants
def shift(instant: str, **delta: float) -> str:
    """A stored-format instant moved by `delta` (timedelta keywords)."""
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")) + timedelta(**delta)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def day_after(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def closing_now(legs: list[dict[str, Any]]) -> str:
    """An instant at which the day of the last entry is closed (01:00 the next day): what the snapshot job would see
    the next morning."""
    return f"{day_after(legs[-1]['recorded_at'][:10])}T01:00:00.000000Z"
