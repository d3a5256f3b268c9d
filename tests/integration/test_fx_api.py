"""FX conversions through the API: four legs through the tenant's FX positions, zero-sum per currency, attribution on
every leg, rounding down in JPY (0), EUR (2) and BHD (3 decimals), exactly once, refusals that post nothing, and a
whole reversal that restores every balance."""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from typing import Any

import boto3
import pytest

from tests.integration.helpers import (
    Tenant,
    balance,
    fund,
    idem,
    ledger_items,
    new_account,
    new_tenant,
    new_user,
    table_items,
)

pytestmark = pytest.mark.xdist_group("integration")

ATTRIBUTION_FIELDS = {
    "rate",
    "pair",
    "quote_id",
    "provider",
    "quote_expires_at",
    "source_amount_minor",
    "source_currency",
    "target_amount_minor",
    "target_currency",
    "rounding",
    "exact_target_minor",
    "remainder_target_minor",
}


@pytest.fixture
def tenant(call: Any, admin_key: str) -> Tenant:
    return new_tenant(call, admin_key, "FX")


@pytest.fixture
def wallets(call: Any, tenant: Tenant) -> dict[str, str]:
    """One user with an EUR (funded 100.00), a JPY and a BHD account."""
    user = new_user(call, tenant)
    accounts = {ccy: new_account(call, tenant, user, ccy) for ccy in ("EUR", "JPY", "BHD")}
    fund(call, tenant, accounts["EUR"], 10_000)
    return accounts


def convert(
    call: Any,
    tenant: Tenant,
    src: str,
    dst: str,
    amount_minor: int,
    currency: str,
    headers: dict[str, str] | None = None,
) -> Any:
    body = {"account_id": src, "to_account_id": dst, "amount_minor": amount_minor, "currency": currency}
    return call("POST", "/v1/fx/conversions", key=tenant.key, headers=headers or idem(), json=body)


def posted(call: Any, tenant: Tenant, account_id: str) -> int:
    return int(balance(call, tenant, account_id)["posted_minor"])


def position(call: Any, tenant: Tenant, currency: str) -> int:
    """The FX position's posted balance through the API, checked against the sum of its shard items in the table."""
    account_id = f"sys_fx_position_{currency.lower()}"
    shards = [
        item
        for item in table_items("MONCORE_BALANCES_TABLE")
        if item.get("tenant_id") == tenant.id and item.get("account_id") == account_id
    ]
    api = posted(call, tenant, account_id)
    assert api == sum(int(item["posted_minor"]) for item in shards)
    return api


def snapshot(call: Any, tenant: Tenant, wallets: dict[str, str]) -> dict[str, int]:
    """Posted balances of the user's accounts and of every FX position account that exists."""
    users = {ccy: posted(call, tenant, acc) for ccy, acc in wallets.items()}
    balance_items = [item for item in table_items("MONCORE_BALANCES_TABLE") if item.get("tenant_id") == tenant.id]
    positions = {}
    for ccy in wallets:
        account_id = f"sys_fx_position_{ccy.lower()}"
        got = call("GET", f"/v1/accounts/{account_id}", key=tenant.key)
        if got.status == 404:
            continue
        positions[f"pos_{ccy}"] = int(got.json()["balance"]["posted_minor"])
        shards = [item for item in balance_items if item.get("account_id") == account_id]
        assert positions[f"pos_{ccy}"] == sum(int(item["posted_minor"]) for item in shards)  # the API sums shards
    return users | positions


def assert_zero_sum_per_currency(tenant: Tenant) -> None:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for leg in (i for i in ledger_items(tenant.id) if i["sk"].startswith("LEG#")):
        totals[(leg["txn_id"], leg["currency"])] += int(leg["leg_amount_minor"])
    assert totals and all(total == 0 for total in totals.values()), totals


def test_eur_jpy_bhd_conversions_round_down_through_the_fx_positions(
    call: Any, tenant: Tenant, wallets: dict[str, str]
) -> None:
    eur, jpy, bhd = wallets["EUR"], wallets["JPY"], wallets["BHD"]

    made = convert(call, tenant, eur, jpy, 1_234, "EUR")  # 12.34 EUR x 162.35 = 2003.399 JPY -> 2003
    assert made.status == 201, made.json()
    txn = made.json()
    assert (txn["type"], txn["status"], txn["amount_minor"], txn["currency"]) == (
        "fx_conversion",
        "SETTLED",
        1234,
        "EUR",
    )
    fx = txn["fx"]
    assert set(fx) == ATTRIBUTION_FIELDS
    assert (fx["rate"], fx["pair"], fx["provider"], fx["rounding"]) == ("162.35", "EUR/JPY", "sandbox_fx", "round_down")
    assert (fx["source_amount_minor"], fx["source_currency"], fx["target_amount_minor"], fx["target_currency"]) == (
        1_234,
        "EUR",
        2_003,
        "JPY",
    )
    assert (fx["exact_target_minor"], fx["remainder_target_minor"]) == ("2003.399", "0.399")
    # The provider reference is the provider's trade (what its statement shows); the quote stays in the attribution.
    assert txn["provider"]["name"] == "sandbox_fx" and txn["provider"]["reference"].startswith("sbxfxt_")
    assert txn["provider"]["reference"] != fx["quote_id"]
    assert [(leg["account_id"], leg["currency"], leg["amount_minor"], leg["phase"]) for leg in txn["legs"]] == [
        (eur, "EUR", -1_234, "SETTLED"),
        ("sys_fx_position_eur", "EUR", 1_234, "SETTLED"),
        ("sys_fx_position_jpy", "JPY", -2_003, "SETTLED"),
        (jpy, "JPY", 2_003, "SETTLED"),
    ]
    assert all(leg["fx"] == fx for leg in txn["legs"])
    assert [leg["amount"] for leg in txn["legs"]] == ["-12.34", "12.34", "-2003", "2003"]
    assert call("GET", f"/v1/transactions/{txn['id']}", key=tenant.key).json()["legs"] == txn["legs"]
    entries = call("GET", f"/v1/accounts/{jpy}/entries", key=tenant.key).json()["items"]
    assert [(e["txn_id"], e["amount_minor"], e["fx"]["quote_id"]) for e in entries] == [
        (txn["id"], 2003, fx["quote_id"])
    ]

    made = convert(call, tenant, eur, bhd, 5_000, "EUR")  # 50.00 EUR x 0.4090 = 20.450 BHD, exact
    assert made.status == 201, made.json()
    assert (made.json()["fx"]["target_amount_minor"], made.json()["fx"]["remainder_target_minor"]) == (20_450, "0")
    assert made.json()["legs"][3]["amount"] == "20.450"

    made = convert(call, tenant, jpy, eur, 1_000, "JPY")  # 1000 JPY x 0.006159531875 = 6.159531875 EUR -> 6.15
    assert made.status == 201, made.json()
    assert (made.json()["fx"]["rate"], made.json()["fx"]["target_amount_minor"]) == ("0.006159531875", 615)
    assert made.json()["fx"]["remainder_target_minor"] == "0.9531875"

    made = convert(call, tenant, bhd, jpy, 10, "BHD")  # 0.010 BHD x 396.9437652 = 3.969 JPY -> 3
    assert made.status == 201, made.json()
    assert made.json()["fx"]["target_amount_minor"] == 3

    assert snapshot(call, tenant, wallets) == {
        "EUR": 10_000 - 1_234 - 5_000 + 615,
        "JPY": 2_003 - 1_000 + 3,
        "BHD": 20_450 - 10,
        "pos_EUR": 1_234 + 5_000 - 615,
        "pos_JPY": -2_003 + 1_000 - 3,
        "pos_BHD": -20_450 + 10,
    }
    assert_zero_sum_per_currency(tenant)


def test_replay_answers_the_same_and_converts_once(call: Any, tenant: Tenant, wallets: dict[str, str]) -> None:
    eur, jpy = wallets["EUR"], wallets["JPY"]
    key = str(uuid.uuid4())
    first = convert(call, tenant, eur, jpy, 300, "EUR", {"Idempotency-Key": key})
    again = convert(call, tenant, eur, jpy, 300, "EUR", {"Idempotency-Key": key})
    assert first.status == again.status == 201
    assert "Idempotency-Replayed" not in first.headers and again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()

    # Past the idempotency record (TTL): the ledger's own condition answers with the first conversion.
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_IDEMPOTENCY_TABLE"])
    table.delete_item(Key={"pk": f"{tenant.id}#{key}"})
    late = convert(call, tenant, eur, jpy, 300, "EUR", {"Idempotency-Key": key})
    assert late.status == 201 and late.headers["Idempotency-Replayed"] == "true"
    assert late.json()["id"] == first.json()["id"] and late.json()["fx"] == first.json()["fx"]

    reused = convert(call, tenant, eur, jpy, 301, "EUR", {"Idempotency-Key": key})
    assert reused.status == 409 and reused.json()["code"] == "idempotency_key_reused"
    assert (posted(call, tenant, eur), posted(call, tenant, jpy)) == (9_700, 487)  # 3.00 EUR -> 487.05 JPY, once
    assert position(call, tenant, "EUR") == 300 and position(call, tenant, "JPY") == -487


def test_refusals_post_nothing(call: Any, tenant: Tenant, wallets: dict[str, str]) -> None:
    eur, jpy, bhd = wallets["EUR"], wallets["JPY"], wallets["BHD"]
    other_user = new_user(call, tenant)
    others_jpy, second_eur = new_account(call, tenant, other_user, "JPY"), new_account(call, tenant, other_user, "EUR")
    before = ledger_items(tenant.id)

    cases: list[tuple[str, str, int, str, int, str]] = [
        (eur, jpy, 10_001, "EUR", 422, "insufficient_funds"),
        (eur, others_jpy, 100, "EUR", 422, "validation_error"),  # another user's account
        (eur, second_eur, 100, "EUR", 422, "validation_error"),  # another user, same currency
        (eur, eur, 100, "EUR", 422, "validation_error"),  # same account
        (eur, jpy, 100, "JPY", 422, "currency_mismatch"),  # currency is not the source account's
        (jpy, eur, 1, "JPY", 422, "validation_error"),  # 0.6159 cents: too small
        ("sys_funding_clearing_eur", jpy, 100, "EUR", 422, "validation_error"),  # system account as source
        (eur, "acc_does_not_exist", 100, "EUR", 404, "not_found"),
    ]
    for src, dst, amount, currency, status, code in cases:
        refused = convert(call, tenant, src, dst, amount, currency)
        assert (refused.status, refused.json()["code"]) == (status, code), (src, dst, refused.json())
        assert refused.headers["Content-Type"] == "application/problem+json"
    too_small = convert(call, tenant, jpy, eur, 1, "JPY")
    assert "amount too small to convert" in too_small.json()["detail"]

    same_currency_user = new_account(call, tenant, _user_of(call, tenant, eur), "EUR")
    same = convert(call, tenant, eur, same_currency_user, 100, "EUR")
    assert same.status == 422 and "use a transfer" in same.json()["detail"]

    fx_position = convert(call, tenant, eur, jpy, 100, "EUR")  # creates the positions; then try one as a target
    assert fx_position.status == 201
    into_position = convert(call, tenant, eur, "sys_fx_position_jpy", 100, "EUR")
    assert into_position.status == 422 and "system account" in into_position.json()["detail"]

    bad_bodies = [
        {"account_id": eur, "to_account_id": jpy, "amount_minor": 1.5, "currency": "EUR"},
        {"account_id": eur, "to_account_id": jpy, "amount_minor": "100", "currency": "EUR"},
        {"account_id": eur, "to_account_id": jpy, "amount_minor": 100, "currency": "EUR", "rate": "999"},
        {"account_id": eur, "to_account_id": jpy, "amount_minor": 100},
    ]
    for body in bad_bodies:
        refused = call("POST", "/v1/fx/conversions", key=tenant.key, headers=idem(), json=body)
        assert refused.status == 422, body
    no_key = call(
        "POST",
        "/v1/fx/conversions",
        key=tenant.key,
        json={"account_id": eur, "to_account_id": bhd, "amount_minor": 100, "currency": "EUR"},
    )
    assert no_key.status == 422 and "Idempotency-Key" in no_key.json()["detail"]

    legs_after = [i for i in ledger_items(tenant.id) if i["sk"].startswith("LEG#")]
    legs_before = [i for i in before if i["sk"].startswith("LEG#")]
    assert len(legs_after) == len(legs_before) + 4  # only the one accepted conversion
    assert snapshot(call, tenant, wallets) == {"EUR": 9_900, "JPY": 162, "BHD": 0, "pos_EUR": 100, "pos_JPY": -162}


def _user_of(call: Any, tenant: Tenant, account_id: str) -> str:
    return str(call("GET", f"/v1/accounts/{account_id}", key=tenant.key).json()["user_id"])


def test_whole_reversal_restores_every_balance(call: Any, tenant: Tenant, wallets: dict[str, str]) -> None:
    eur, bhd = wallets["EUR"], wallets["BHD"]
    made = convert(call, tenant, eur, bhd, 2_503, "EUR")  # 25.03 EUR x 0.4090 = 10.23727 BHD -> 10.237
    assert made.status == 201, made.json()
    txn = made.json()
    assert txn["fx"]["target_amount_minor"] == 10_237
    converted = snapshot(call, tenant, wallets)
    assert converted == {"EUR": 7_497, "JPY": 0, "BHD": 10_237, "pos_EUR": 2_503, "pos_BHD": -10_237}

    partial = call(
        "POST",
        f"/v1/transactions/{txn['id']}/reverse",
        key=tenant.key,
        headers=idem(),
        json={"amount_minor": 1_000, "reason": "partial"},
    )
    assert partial.status == 422, partial.json()

    reversed_ = call(
        "POST", f"/v1/transactions/{txn['id']}/reverse", key=tenant.key, headers=idem(), json={"reason": "customer"}
    )
    assert reversed_.status == 201, reversed_.json()
    reversal = reversed_.json()
    assert (reversal["type"], reversal["reverses_txn_id"]) == ("reversal", txn["id"])
    assert sorted((leg["account_id"], leg["amount_minor"]) for leg in reversal["legs"]) == sorted(
        [(eur, 2_503), ("sys_fx_position_eur", -2_503), ("sys_fx_position_bhd", 10_237), (bhd, -10_237)]
    )
    assert all(leg["fx"]["reverses"] == txn["id"] and leg["fx"]["rate"] == "0.4090" for leg in reversal["legs"])
    assert snapshot(call, tenant, wallets) == {"EUR": 10_000, "JPY": 0, "BHD": 0, "pos_EUR": 0, "pos_BHD": 0}
    original = call("GET", f"/v1/transactions/{txn['id']}", key=tenant.key).json()
    assert original["status"] == "SETTLED" and original["reversed_minor"] == 2_503
    assert_zero_sum_per_currency(tenant)


def test_fx_capability_gates_conversions(call: Any, admin_key: str) -> None:
    tenant = new_tenant(call, admin_key, "No FX")
    # The admin capabilities endpoint arrives with issue 4: switch FX off in the tenant record before any partner
    # call reads (and caches) the tenant's configuration.
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_TENANTS_TABLE"])
    table.update_item(
        Key={"pk": tenant.id},
        UpdateExpression="SET capabilities.fx = :off",
        ExpressionAttributeValues={":off": "disabled"},
    )
    user = new_user(call, tenant)
    eur, jpy = new_account(call, tenant, user, "EUR"), new_account(call, tenant, user, "JPY")
    fund(call, tenant, eur, 1_000)
    refused = convert(call, tenant, eur, jpy, 100, "EUR")
    assert refused.status == 403 and refused.json()["code"] == "capability_disabled"
    assert posted(call, tenant, eur) == 1_000 and posted(call, tenant, jpy) == 0


def test_ledger_replay_does_not_need_the_provider_again(call: Any, tenant: Tenant, wallets: dict[str, str]) -> None:
    """A retry after the idempotency record expired answers from the ledger even when the conversion could no longer
    be priced (here: the tenant's provider was retired), and never converts twice."""
    from moncore.domain.context import Caller
    from moncore.domain.errors import ValidationFailed
    from moncore.http.idempotency import request_identity
    from moncore.ledger.fx import FxService

    key = str(uuid.uuid4())
    body = {"account_id": wallets["EUR"], "to_account_id": wallets["JPY"], "amount_minor": 1_000, "currency": "EUR"}
    first = convert(call, tenant, wallets["EUR"], wallets["JPY"], 1_000, "EUR", {"Idempotency-Key": key})
    assert first.status == 201, first.json()
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_TENANTS_TABLE"])
    table.update_item(
        Key={"pk": tenant.id},
        UpdateExpression="SET fx_provider = :gone",
        ExpressionAttributeValues={":gone": "retired_provider"},
    )
    caller = Caller(tenant_id=tenant.id, actor=f"key:{tenant.key_id}", role="tenant", correlation_id="replay")
    again = FxService().convert(caller, request_identity(key, "POST /v1/fx/conversions", body), **body)
    assert again.replayed and again.body["id"] == first.json()["id"] and again.body["fx"] == first.json()["fx"]
    with pytest.raises(ValidationFailed, match="not configured"):
        FxService().convert(caller, request_identity("fresh-key", "POST /v1/fx/conversions", body), **body)
    assert posted(call, tenant, wallets["EUR"]) == 9_000
