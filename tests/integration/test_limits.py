"""KYC tier limits through the API (docs/limits-and-geo.md): per transaction, UTC day and month counters, balance cap.

Tenants here override tier_0's EUR limits with small numbers (admin API `tier_limits`), so a few requests reach
them. Counters and balances are read straight from the tables with boto3, never through the code under test.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, new_user, table_items

pytestmark = pytest.mark.xdist_group("integration")

PER_TXN, DAILY, MONTHLY, CAP = 2_000, 5_000, 9_000, 20_000


def limits(
    per_transaction: int | None = PER_TXN,
    daily: int | None = DAILY,
    monthly: int | None = MONTHLY,
    cap: int | None = CAP,
) -> dict[str, Any]:
    return {
        "tier_0": {
            "EUR": {
                "per_transaction_minor": per_transaction,
                "daily_minor": daily,
                "monthly_minor": monthly,
                "balance_cap_minor": cap,
            }
        }
    }


def limited_tenant(call: Any, admin_key: str, tier_limits: dict[str, Any] | None = None) -> Tenant:
    body = {"name": "Limits", "jurisdictions": ["FR"], "tier_limits": tier_limits or limits()}
    made = call("POST", "/admin/v1/tenants", key=admin_key, json=body, headers=idem())
    assert made.status == 201, made.json()
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    assert issued.status == 201, issued.json()
    return Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])


def transfer(call: Any, tenant: Tenant, source: str, target: str, amount_minor: int, **extra: Any) -> Any:
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": amount_minor, "currency": "EUR"}
    return call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body | extra)


def counter(tenant: Tenant, user_id: str, window: str, period: str, currency: str = "EUR") -> int:
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_COUNTERS_TABLE"])
    key = f"{tenant.id}#user#{user_id}#{currency}#{window}#{period}"
    item = table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
    return int(item["total_minor"]) if item else 0


def periods(txn: dict[str, Any]) -> tuple[str, str]:
    """The UTC day and month the transaction was recorded in (the windows it was counted in)."""
    return txn["created_at"][:10], txn["created_at"][:7]


def refusal(response: Any, limit: str) -> dict[str, Any]:
    assert response.status == 422, response.json()
    body = response.json()
    assert body["code"] == "limit_exceeded", body
    assert body["errors"][0]["limit"] == limit, body
    return dict(body)


def posted_transfers(tenant: Tenant) -> list[dict[str, Any]]:
    return [i for i in ledger_items(tenant.id) if i["sk"] == "TXN" and i["type"] == "transfer"]


def refusals_audited(tenant: Tenant) -> list[dict[str, Any]]:
    return [
        i
        for i in table_items("MONCORE_AUDIT_TABLE")
        if i["tenant_id"] == tenant.id and i["action"] == "compliance.blocked"
    ]


@pytest.fixture
def payer_and_payee(call: Any, admin_key: str) -> tuple[Tenant, str, str, str]:
    """(tenant, payer user, payer account funded 20_000, payee account of another user)."""
    tenant = limited_tenant(call, admin_key)
    payer = new_user(call, tenant)
    source = new_account(call, tenant, payer)
    fund(call, tenant, source, CAP)
    target = new_account(call, tenant, new_user(call, tenant))
    return tenant, payer, source, target


# ------------------------------------------------------------------------------------------------- concurrency
def race(tenant: Tenant, bodies: list[dict[str, Any]], workers: int) -> list[tuple[float, float, Any]]:
    """Send the transfers from `workers` threads started together, through the kernel service in-process (the
    handler's code below the HTTP layer; the local gateway would add a cold container per thread). Returns (start,
    end, transaction view or the DomainError) per transfer."""
    from moncore.domain.context import Caller
    from moncore.domain.errors import DomainError
    from moncore.http.idempotency import request_identity
    from moncore.ledger.service import LedgerService

    service = LedgerService()
    caller = Caller(tenant_id=tenant.id, actor="key:test", role="tenant", correlation_id="limits-race")
    results: list[tuple[float, float, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(workers)

    def send(mine: list[dict[str, Any]]) -> None:
        start.wait()
        for body in mine:
            request = request_identity(uuid.uuid4().hex, "POST /v1/transfers", body)
            began = time.perf_counter()
            try:
                outcome: Any = service.transfer(caller, request, **body, reference=None).body
            except DomainError as refused:
                outcome = refused
            with lock:
                results.append((began, time.perf_counter(), outcome))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, [bodies[i::workers] for i in range(workers)]))
    # The race was real: transfers were in flight together, so a read-then-write check would have let several
    # of them read the same total.
    in_flight = max(sum(1 for b, e, _ in results if b <= began < e) for began, _, _ in results)
    assert in_flight >= workers // 2, in_flight
    return results


def refused_with(results: list[tuple[float, float, Any]], limit: str) -> int:
    """How many were refused; each must be a 422 limit_exceeded naming `limit` (and nothing else may fail)."""
    from moncore.domain.errors import DomainError

    refusals = [outcome for _, _, outcome in results if isinstance(outcome, DomainError)]
    for refused in refusals:
        named = (refused.errors or [{}])[0].get("limit")
        assert (refused.status, refused.code, named) == (422, "limit_exceeded", limit), refused
    return len(refusals)


def test_parallel_transfers_never_exceed_the_daily_limit(call: Any, admin_key: str) -> None:
    """16 threads start together, 32 transfers of 1_000 to another user; the payer holds 20_000 and may send 5_000 a
    day. Exactly five land, 27 are 422 limit_exceeded and post nothing, the day counter equals what was accepted."""
    tenant = limited_tenant(call, admin_key, limits(per_transaction=1_000, monthly=None, cap=100_000))
    payer = new_user(call, tenant)
    source = new_account(call, tenant, payer)
    fund(call, tenant, source, 20_000)
    target = new_account(call, tenant, new_user(call, tenant))
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": 1_000, "currency": "EUR"}

    results = race(tenant, [body] * 32, workers=16)

    assert refused_with(results, "daily") == 32 - DAILY // 1_000
    accepted = [outcome for _, _, outcome in results if isinstance(outcome, dict)]
    assert len(accepted) == DAILY // 1_000 and all(t["status"] == "SETTLED" for t in accepted)
    day, _ = periods(accepted[0])
    assert counter(tenant, payer, "day", day) == sum(t["amount_minor"] for t in accepted) == DAILY
    assert len(posted_transfers(tenant)) == len(accepted)  # refusals left no transaction behind
    assert balance(call, tenant, source)["posted_minor"] == 20_000 - DAILY
    assert balance(call, tenant, target)["posted_minor"] == DAILY
    assert len(refusals_audited(tenant)) == 32 - DAILY // 1_000


def test_parallel_credits_never_exceed_the_balance_cap(call: Any, admin_key: str) -> None:
    """The payee's balance cap (tier_0: 5_000) is a condition on its balance item: 12 threads send 1_000 each into
    it at once from a tier_1 payer (no limits; its tier set as the KYC adjudication would). Exactly five land."""
    unlimited = dict.fromkeys(limits()["tier_0"]["EUR"])
    tenant = limited_tenant(call, admin_key, limits(cap=5_000) | {"tier_1": {"EUR": unlimited}})
    payer = new_user(call, tenant)
    users = boto3.resource("dynamodb").Table(os.environ["MONCORE_USERS_TABLE"])
    users.update_item(
        Key={"pk": f"{tenant.id}#{payer}"}, UpdateExpression="SET tier = :t", ExpressionAttributeValues={":t": "tier_1"}
    )
    source = new_account(call, tenant, payer)
    fund(call, tenant, source, 20_000)  # above tier_0's cap: tier_1 has none
    target = new_account(call, tenant, new_user(call, tenant))
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": 1_000, "currency": "EUR"}

    results = race(tenant, [body] * 12, workers=12)

    assert refused_with(results, "balance_cap") == 7
    assert balance(call, tenant, target)["posted_minor"] == 5_000
    assert balance(call, tenant, source)["posted_minor"] == 15_000


# ------------------------------------------------------------------------------------------------- each limit
def test_per_transaction_limit(call: Any, payer_and_payee: tuple[Tenant, str, str, str]) -> None:
    tenant, payer, source, target = payer_and_payee
    body = refusal(transfer(call, tenant, source, target, PER_TXN + 1), "per_transaction")
    assert body["errors"][0] | {"msg": None} == {
        "loc": ["body", "amount_minor"],
        "msg": None,
        "limit": "per_transaction",
        "tier": "tier_0",
        "currency": "EUR",
        "limit_minor": PER_TXN,
    }
    assert posted_transfers(tenant) == [] and balance(call, tenant, source)["posted_minor"] == CAP
    made = transfer(call, tenant, source, target, PER_TXN)
    assert made.status == 201, made.json()
    day, month = periods(made.json())
    assert counter(tenant, payer, "day", day) == counter(tenant, payer, "month", month) == PER_TXN


def test_daily_limit_and_the_decision_recorded(call: Any, payer_and_payee: tuple[Tenant, str, str, str]) -> None:
    tenant, payer, source, target = payer_and_payee
    first = transfer(call, tenant, source, target, 2_000)
    assert first.status == 201 and transfer(call, tenant, source, target, 2_000).status == 201
    refusal(transfer(call, tenant, source, target, 1_001), "daily")
    last = transfer(call, tenant, source, target, 1_000)  # exactly up to the limit
    assert last.status == 201, last.json()
    refusal(transfer(call, tenant, source, target, 1), "daily")
    day, month = periods(last.json())
    assert counter(tenant, payer, "day", day) == counter(tenant, payer, "month", month) == DAILY
    assert balance(call, tenant, source)["posted_minor"] == CAP - DAILY

    # Invariant 5: the allow decision names the tier and every limit applied, with the geo checks.
    checks = {c.get("check", c.get("capability")): c for c in last.json()["compliance"]["checks"]}
    assert checks["tier_limits"] | {"enforced": None} == {
        "check": "tier_limits",
        "user_id": payer,
        "account_id": source,
        "amount_minor": 1_000,
        "tier": "tier_0",
        "currency": "EUR",
        "source": "tenant",
        "per_transaction_minor": PER_TXN,
        "daily_minor": DAILY,
        "monthly_minor": MONTHLY,
        "balance_cap_minor": CAP,
        "result": "pass",
        "enforced": None,
    }
    assert checks["balance_cap"]["account_id"] == target and checks["balance_cap"]["balance_cap_minor"] == CAP
    assert {c["user_id"] for c in last.json()["compliance"]["checks"] if c.get("check") == "geo"} == {
        payer,
        checks["balance_cap"]["user_id"],
    }


def test_monthly_limit_refuses_without_charging_the_day(call: Any, admin_key: str) -> None:
    tenant = limited_tenant(call, admin_key, limits(daily=None, monthly=3_000))
    payer = new_user(call, tenant)
    source = new_account(call, tenant, payer)
    fund(call, tenant, source, 10_000)
    target = new_account(call, tenant, new_user(call, tenant))
    made = transfer(call, tenant, source, target, 2_000)
    assert made.status == 201
    refusal(transfer(call, tenant, source, target, 1_500), "monthly")
    day, month = periods(made.json())
    assert counter(tenant, payer, "month", month) == 2_000
    assert counter(tenant, payer, "day", day) == 0  # daily: no limit, so no counter at all


def test_balance_cap_on_fundings_transfers_fx_and_captures(call: Any, admin_key: str) -> None:
    capped = limits(per_transaction=None, daily=None, monthly=None, cap=5_000)
    usd = capped["tier_0"]["EUR"] | {"balance_cap_minor": 2_000}
    tenant = limited_tenant(call, admin_key, {"tier_0": capped["tier_0"] | {"USD": usd}})
    rich = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, rich, 5_000)
    refused = call(
        "POST",
        "/v1/fundings",
        key=tenant.key,
        headers=idem(),
        json={"account_id": rich, "amount_minor": 1, "currency": "EUR"},
    )
    refusal(refused, "balance_cap")

    poor_user = new_user(call, tenant)
    poor = new_account(call, tenant, poor_user)
    fund(call, tenant, poor, 4_000)
    refusal(transfer(call, tenant, rich, poor, 1_001), "balance_cap")  # refused by the balance item's condition
    assert balance(call, tenant, rich)["posted_minor"] == 5_000 and balance(call, tenant, poor)["posted_minor"] == 4_000

    # A hold does not credit the payee; capturing it does, so the cap applies at capture and the hold stays open.
    held = transfer(call, tenant, rich, poor, 1_500, capture="manual")
    assert held.status == 201, held.json()
    txn_id = held.json()["id"]
    capture = call("POST", f"/v1/transactions/{txn_id}/capture", key=tenant.key, headers=idem(), json={})
    refusal(capture, "balance_cap")
    partial = call(
        "POST", f"/v1/transactions/{txn_id}/capture", key=tenant.key, headers=idem(), json={"amount_minor": 1_000}
    )
    assert partial.status == 200 and partial.json()["status"] == "AUTHORIZED", partial.json()
    assert balance(call, tenant, poor)["posted_minor"] == 5_000

    # FX: the converted amount credited to the target account is capped in the target currency (USD: 2_000).
    dollars = new_account(call, tenant, poor_user, "USD")
    fx = {"account_id": poor, "to_account_id": dollars, "amount_minor": 1_000, "currency": "EUR"}
    converted = call("POST", "/v1/fx/conversions", key=tenant.key, headers=idem(), json=fx)
    assert converted.status == 201 and converted.json()["fx"]["target_amount_minor"] == 1_085, converted.json()
    refusal(call("POST", "/v1/fx/conversions", key=tenant.key, headers=idem(), json=fx), "balance_cap")
    assert balance(call, tenant, dollars)["posted_minor"] == 1_085
    assert balance(call, tenant, poor)["posted_minor"] == 4_000


def test_holds_count_when_placed_and_releases_do_not_give_back(
    call: Any, payer_and_payee: tuple[Tenant, str, str, str]
) -> None:
    tenant, payer, source, target = payer_and_payee
    held = transfer(call, tenant, source, target, 2_000, capture="manual")
    assert held.status == 201
    voided = call("POST", f"/v1/transactions/{held.json()['id']}/void", key=tenant.key, headers=idem(), json={})
    assert voided.status == 200 and voided.json()["status"] == "REVERSED"
    assert transfer(call, tenant, source, target, 2_000).status == 201
    refusal(transfer(call, tenant, source, target, 1_001), "daily")  # the voided 2_000 still counts today
    day, _ = periods(held.json())
    assert counter(tenant, payer, "day", day) == 4_000


def test_own_account_transfers_do_not_count_but_fx_does(call: Any, admin_key: str) -> None:
    tenant = limited_tenant(call, admin_key)
    user = new_user(call, tenant)
    main, savings = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, main, 10_000)
    for _ in range(3):  # 6_000 moved between own accounts: above the daily limit, never counted
        assert transfer(call, tenant, main, savings, 2_000).status == 201
    usd = new_account(call, tenant, user, "USD")
    fx = {"account_id": main, "to_account_id": usd, "amount_minor": 2_001, "currency": "EUR"}
    refusal(call("POST", "/v1/fx/conversions", key=tenant.key, headers=idem(), json=fx), "per_transaction")
    converted = call("POST", "/v1/fx/conversions", key=tenant.key, headers=idem(), json=fx | {"amount_minor": 2_000})
    assert converted.status == 201, converted.json()
    day, _ = periods(converted.json())
    assert counter(tenant, user, "day", day) == 2_000


def test_defaults_apply_without_overrides_and_unconfigured_currencies_fail_closed(call: Any, admin_key: str) -> None:
    made = call("POST", "/admin/v1/tenants", key=admin_key, json={"name": "D", "jurisdictions": ["FR"]}, headers=idem())
    assert made.status == 201 and made.json()["tier_limits"] == {}
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    tenant = Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])
    source = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, source, 150_000)
    target = new_account(call, tenant, new_user(call, tenant))
    body = refusal(transfer(call, tenant, source, target, 100_001), "per_transaction")  # tier_0 EUR: 1_000.00
    assert body["errors"][0]["limit_minor"] == 100_000
    assert transfer(call, tenant, source, target, 100_000).status == 201

    huf = new_account(call, tenant, new_user(call, tenant), "HUF")  # no default limits for HUF: nothing allowed
    got = call(
        "POST",
        "/v1/fundings",
        key=tenant.key,
        headers=idem(),
        json={"account_id": huf, "amount_minor": 100, "currency": "HUF"},
    )
    assert refusal(got, "balance_cap")["errors"][0]["limit_minor"] == 0


@pytest.mark.parametrize(
    "tier_limits",
    [
        {"tier_9": limits()["tier_0"]},
        {"tier_0": {"EUR": {"per_transaction_minor": 1}}},
        {"tier_0": {"EUR": limits()["tier_0"]["EUR"] | {"daily_minor": -1}}},
        {"tier_0": {"EUR": limits()["tier_0"]["EUR"] | {"daily_minor": 1.5}}},
        {"tier_0": {"XAU": limits()["tier_0"]["EUR"]}},
    ],
)
def test_tier_limit_overrides_are_validated(call: Any, admin_key: str, tier_limits: dict[str, Any]) -> None:
    body = {"name": "Bad", "jurisdictions": ["FR"], "tier_limits": tier_limits}
    got = call("POST", "/admin/v1/tenants", key=admin_key, json=body, headers=idem())
    assert got.status == 422 and got.json()["code"] == "validation_error", got.json()


def test_a_replay_after_the_limit_is_reached_answers_the_original(
    call: Any, payer_and_payee: tuple[Tenant, str, str, str]
) -> None:
    """The same key after the day is full, its idempotency record gone (TTL), replays the transfer it made from the
    ledger: never a refusal, never a second charge."""
    tenant, payer, source, target = payer_and_payee
    key = str(uuid.uuid4())
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": 2_000, "currency": "EUR"}
    first = call("POST", "/v1/transfers", key=tenant.key, headers={"Idempotency-Key": key}, json=body)
    assert first.status == 201
    assert transfer(call, tenant, source, target, 2_000).status == 201
    assert transfer(call, tenant, source, target, 1_000).status == 201  # the day is full now
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_IDEMPOTENCY_TABLE"])
    for payload in (body, body | {"amount_minor": PER_TXN + 1}):  # also when the pure check would refuse it
        table.delete_item(Key={"pk": f"{tenant.id}#{key}"})
        again = call("POST", "/v1/transfers", key=tenant.key, headers={"Idempotency-Key": key}, json=payload)
        if payload is body:
            assert again.status == 201 and again.json()["id"] == first.json()["id"], again.json()
        else:
            assert again.status == 409 and again.json()["code"] == "idempotency_key_reused", again.json()
    day, _ = periods(first.json())
    assert counter(tenant, payer, "day", day) == DAILY
    assert len(posted_transfers(tenant)) == 3


def test_a_funding_that_filled_the_account_replays_after_its_idempotency_record_expired(
    call: Any, admin_key: str
) -> None:
    tenant = limited_tenant(call, admin_key, limits(cap=5_000))
    account = new_account(call, tenant, new_user(call, tenant))
    key, body = str(uuid.uuid4()), {"account_id": account, "amount_minor": 5_000, "currency": "EUR"}
    first = call("POST", "/v1/fundings", key=tenant.key, headers={"Idempotency-Key": key}, json=body)
    assert first.status == 201, first.json()
    boto3.resource("dynamodb").Table(os.environ["MONCORE_IDEMPOTENCY_TABLE"]).delete_item(
        Key={"pk": f"{tenant.id}#{key}"}
    )
    again = call("POST", "/v1/fundings", key=tenant.key, headers={"Idempotency-Key": key}, json=body)
    assert again.status == 201 and again.json()["id"] == first.json()["id"], again.json()
    assert balance(call, tenant, account)["posted_minor"] == 5_000
