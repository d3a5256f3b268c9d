"""Bad input of any kind: a 4xx problem+json, nothing posted, no 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture(scope="module")
def world(call: Any, admin_key: str) -> dict[str, Any]:
    tenant = new_tenant(call, admin_key, "Bad Input")
    other = new_tenant(call, admin_key, "Someone Else")
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 1_000)
    foreign = new_account(call, other, new_user(call, other))
    return {"tenant": tenant, "a": a, "b": b, "foreign": foreign}


def _transfer(world: dict[str, Any], **patch: Any) -> dict[str, Any]:
    return {"from_account_id": world["a"], "to_account_id": world["b"], "amount_minor": 10, "currency": "EUR"} | patch


BAD_TRANSFERS = {
    "float": {"amount_minor": 10.5},
    "float_integral": {"amount_minor": 10.0},
    "too_many_decimals": {"amount_minor": 1.234},
    "zero": {"amount_minor": 0},
    "negative": {"amount_minor": -10},
    "string_amount": {"amount_minor": "10"},
    "bool_amount": {"amount_minor": True},
    "huge_amount": {"amount_minor": 10**30},
    "unknown_currency": {"currency": "ABC"},
    "lowercase_currency": {"currency": "eur"},
    "metal": {"currency": "XAU"},
    "number_currency": {"currency": 978},
    "null_account": {"to_account_id": None},
    "array_account": {"to_account_id": ["x"]},
    "unknown_field": {"fee_minor": 1},
    "same_account": {"to_account_id": "__a__"},
}


@pytest.mark.parametrize("case", sorted(BAD_TRANSFERS))
def test_bad_transfer_bodies(call: Any, world: dict[str, Any], case: str) -> None:
    patch = {k: (world["a"] if v == "__a__" else v) for k, v in BAD_TRANSFERS[case].items()}
    before = ledger_items(world["tenant"].id)
    got = call("POST", "/v1/transfers", key=world["tenant"].key, headers=idem(), json=_transfer(world, **patch))
    assert got.status == 422, (case, got.status, got.body)
    assert got.headers["Content-Type"] == "application/problem+json"
    problem = got.json()
    assert problem["status"] == 422 and problem["code"] == "validation_error" and problem["title"]
    assert ledger_items(world["tenant"].id) == before


@pytest.mark.parametrize("missing", ["from_account_id", "to_account_id", "amount_minor", "currency"])
def test_missing_fields(call: Any, world: dict[str, Any], missing: str) -> None:
    body = _transfer(world)
    del body[missing]
    got = call("POST", "/v1/transfers", key=world["tenant"].key, headers=idem(), json=body)
    assert got.status == 422 and any(missing in e["loc"] for e in got.json()["errors"])


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"amount_minor": NaN}', b"[" * 5000 + b"]" * 5000]
)
def test_malformed_json(call: Any, world: dict[str, Any], raw: bytes) -> None:
    before = ledger_items(world["tenant"].id)
    got = call(
        "POST",
        "/v1/transfers",
        key=world["tenant"].key,
        headers=idem() | {"Content-Type": "application/json"},
        data=raw,
    )
    assert 400 <= got.status < 500, (raw[:20], got.status, got.body)
    assert got.headers["Content-Type"] == "application/problem+json"
    assert ledger_items(world["tenant"].id) == before


def test_huge_body_is_413(call: Any, world: dict[str, Any]) -> None:
    body = _transfer(world, reference="x" * 100_000)
    got = call("POST", "/v1/transfers", key=world["tenant"].key, headers=idem(), data=json.dumps(body).encode())
    assert got.status == 413 and got.json()["code"] == "payload_too_large"


def test_missing_idempotency_key(call: Any, world: dict[str, Any]) -> None:
    got = call("POST", "/v1/transfers", key=world["tenant"].key, json=_transfer(world))
    assert got.status == 422 and got.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_unknown_and_foreign_accounts_are_404(call: Any, world: dict[str, Any]) -> None:
    tenant: Tenant = world["tenant"]
    for account in ("acc_does_not_exist", world["foreign"]):
        moved = call(
            "POST", "/v1/transfers", key=tenant.key, headers=idem(), json=_transfer(world, to_account_id=account)
        )
        assert moved.status == 404 and moved.json()["code"] == "not_found"
        funded = call(
            "POST",
            "/v1/fundings",
            key=tenant.key,
            headers=idem(),
            json={"account_id": account, "amount_minor": 5, "currency": "EUR"},
        )
        assert funded.status == 404
        assert call("GET", f"/v1/accounts/{account}", key=tenant.key).status == 404
        assert call("GET", f"/v1/accounts/{account}/entries", key=tenant.key).status == 404
    assert balance(call, tenant, world["a"])["available_minor"] == 1_000


def test_bad_query_and_path_params(call: Any, world: dict[str, Any]) -> None:
    key = world["tenant"].key
    for limit in ("0", "201", "abc", "-1"):
        got = call("GET", f"/v1/accounts/{world['a']}/entries", key=key, query={"limit": limit})
        assert got.status == 422, limit
    assert call("GET", "/v1/transactions/..%2F..", key=key).status in (404, 422)
