"""GET /v1/tenant/exposure: derived from the tenant's user balances and this month's settled ledger entries."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.helpers import fund, idem, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


def test_exposure_sums_user_balances_and_this_months_outflows(call: Any, admin_key: str) -> None:
    tenant = new_tenant(call, admin_key, "Exposure")
    empty = call("GET", "/v1/tenant/exposure", key=tenant.key)
    assert empty.status == 200 and empty.json()["balances_by_currency"] == {} and empty.json()["cards_issued"] == 0

    user = new_user(call, tenant)
    eur, usd = new_account(call, tenant, user, "EUR"), new_account(call, tenant, user, "USD")
    other = new_account(call, tenant, new_user(call, tenant), "EUR")
    fund(call, tenant, eur, 10_000)
    transfer = {"from_account_id": eur, "to_account_id": other, "amount_minor": 2_500, "currency": "EUR"}
    assert call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=transfer).status == 201
    hold = transfer | {"amount_minor": 1_000, "capture": "manual"}
    assert call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=hold).status == 201  # not volume yet
    conversion = {"account_id": eur, "to_account_id": usd, "amount_minor": 1_000, "currency": "EUR"}
    converted = call("POST", "/v1/fx/conversions", key=tenant.key, headers=idem(), json=conversion)
    assert converted.status == 201, converted.json()
    usd_credit = next(leg["amount_minor"] for leg in converted.json()["legs"] if leg["account_id"] == usd)

    exposure = call("GET", "/v1/tenant/exposure", key=tenant.key, headers={"X-Correlation-Id": str(uuid.uuid4())})
    assert exposure.status == 200
    body = exposure.json()
    # user money: 10_000 funded, all still with the tenant's users (EUR moved between users or sold for USD)
    assert body["balances_by_currency"]["EUR"]["posted_minor"] == 10_000 - 1_000
    assert body["balances_by_currency"]["EUR"]["available_minor"] == 10_000 - 1_000 - 1_000  # the hold
    assert body["balances_by_currency"]["USD"]["posted_minor"] == usd_credit
    assert body["monthly_volume"] == {"EUR": {"amount_minor": 3_500, "amount": "35.00"}}
    assert body["monthly_fx_volume"] == {"EUR": {"amount_minor": 1_000, "amount": "10.00"}}
    assert body["user_accounts"] == 3 and body["as_of"].endswith("Z")
    other_tenant = new_tenant(call, admin_key, "Elsewhere")
    assert call("GET", "/v1/tenant/exposure", key=other_tenant.key).json()["balances_by_currency"] == {}


def test_exposure_counts_products_and_shows_each_users_rolling_volumes_and_limit_usage(
    call: Any, admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "Exposure per user")
    payer_user, payee_user = new_user(call, tenant), new_user(call, tenant)
    payer, payee = new_account(call, tenant, payer_user), new_account(call, tenant, payee_user)
    fund(call, tenant, payer, 10_000)
    for amount in (1_500, 2_500):
        body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": amount, "currency": "EUR"}
        assert call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body).status == 201

    products = call("GET", "/v1/tenant/exposure", key=tenant.key).json()["products"]
    assert products["funding"] == {
        "transactions": 1,
        "settled_out": {},
        "settled_in": {"EUR": {"amount_minor": 10_000, "amount": "100.00"}},
    }
    assert products["transfer"]["transactions"] == 2
    assert products["transfer"]["settled_out"]["EUR"]["amount_minor"] == 4_000
    assert products["transfer"]["settled_in"]["EUR"]["amount_minor"] == 4_000

    mine = call("GET", f"/v1/users/{payer_user}/exposure", key=tenant.key)
    assert mine.status == 200, mine.json()
    eur = mine.json()["by_currency"]["EUR"]
    assert eur["rolling"]["out_1h"] == {"count": 2, "amount_minor": 4_000}
    assert eur["rolling"]["out_30d"] == {"count": 2, "amount_minor": 4_000}
    assert eur["rolling"]["in_24h"] == {"count": 1, "amount_minor": 10_000}
    assert (eur["limits"]["used_today_minor"], eur["limits"]["used_this_month_minor"]) == (4_000, 4_000)
    assert eur["limits"]["daily_minor"] == 250_000 and mine.json()["tier"] == "tier_0"
    theirs = call("GET", f"/v1/users/{payee_user}/exposure", key=tenant.key).json()["by_currency"]["EUR"]
    assert (
        theirs["rolling"]["in_1h"] == {"count": 2, "amount_minor": 4_000} and theirs["limits"]["used_today_minor"] == 0
    )
    other = new_tenant(call, admin_key, "Not yours")
    assert call("GET", f"/v1/users/{payer_user}/exposure", key=other.key).status == 404
