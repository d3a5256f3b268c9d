"""Test helpers over the integration `call` fixture: a fresh tenant per test, and direct table reads for assertions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3


def idem() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


@dataclass
class Tenant:
    id: str
    key: str
    key_id: str


def new_tenant(call: Any, admin_key: str, name: str = "Test Tenant") -> Tenant:
    made = call(
        "POST", "/admin/v1/tenants", key=admin_key, json={"name": name, "jurisdictions": ["FR"]}, headers=idem()
    )
    assert made.status == 201, made.json()
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    assert issued.status == 201, issued.json()
    return Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])


def new_user(call: Any, tenant: Tenant) -> str:
    made = call(
        "POST",
        "/v1/users",
        key=tenant.key,
        headers=idem(),
        json={"external_ref": uuid.uuid4().hex, "full_name": "Ada Lovelace", "country": "FR"},
    )
    assert made.status == 201, made.json()
    return str(made.json()["id"])


def new_account(call: Any, tenant: Tenant, user_id: str, currency: str = "EUR") -> str:
    made = call("POST", "/v1/accounts", key=tenant.key, headers=idem(), json={"user_id": user_id, "currency": currency})
    assert made.status == 201, made.json()
    return str(made.json()["id"])


def fund(call: Any, tenant: Tenant, account_id: str, amount_minor: int, currency: str = "EUR") -> dict[str, Any]:
    made = call(
        "POST",
        "/v1/fundings",
        key=tenant.key,
        headers=idem(),
        json={"account_id": account_id, "amount_minor": amount_minor, "currency": currency},
    )
    assert made.status == 201, made.json()
    return dict(made.json())


def balance(call: Any, tenant: Tenant, account_id: str) -> dict[str, int]:
    got = call("GET", f"/v1/accounts/{account_id}", key=tenant.key)
    assert got.status == 200, got.json()
    return dict(got.json()["balance"])


def table_items(env_var: str) -> list[dict[str, Any]]:
    """Every item of a table (scan), read with plain boto3 so assertions do not trust the code under test."""
    import os

    table = boto3.resource("dynamodb").Table(os.environ[env_var])
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def ledger_items(tenant_id: str) -> list[dict[str, Any]]:
    return [i for i in table_items("MONCORE_LEDGER_TABLE") if i["tenant_id"] == tenant_id]
