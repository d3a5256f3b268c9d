"""Geo restrictions through the API (docs/limits-and-geo.md): users outside the tenant's jurisdictions or in a FATF
call-for-action country are refused with 422 geo_blocked and an audit event; postings re-check the users they move
money for; a tenant cannot be configured to serve a listed country."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, fund, idem, ledger_items, new_account, new_user, table_items

pytestmark = pytest.mark.xdist_group("integration")


def tenant_in(call: Any, admin_key: str, jurisdictions: list[str]) -> Tenant:
    made = call(
        "POST", "/admin/v1/tenants", key=admin_key, json={"name": "Geo", "jurisdictions": jurisdictions}, headers=idem()
    )
    assert made.status == 201, made.json()
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    return Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])


def create_user(call: Any, tenant: Tenant, country: str) -> Any:
    body = {"external_ref": uuid.uuid4().hex, "full_name": "Geo Test", "country": country}
    return call("POST", "/v1/users", key=tenant.key, headers=idem(), json=body)


def blocked(tenant: Tenant) -> list[dict[str, Any]]:
    return [
        i
        for i in table_items("MONCORE_AUDIT_TABLE")
        if i["tenant_id"] == tenant.id and i["action"] == "compliance.blocked"
    ]


@pytest.mark.parametrize(
    ("country", "reason"),
    [("DE", "outside_jurisdictions"), ("IR", "fatf_call_for_action"), ("KP", "fatf_call_for_action")],
)
def test_users_outside_the_jurisdictions_or_on_the_fatf_list_are_refused(
    call: Any, admin_key: str, country: str, reason: str
) -> None:
    tenant = tenant_in(call, admin_key, ["FR", "GB"])
    refused = create_user(call, tenant, country)
    assert refused.status == 422, refused.json()
    body = refused.json()
    assert body["code"] == "geo_blocked" and body["errors"][0]["reason"] == reason, body
    assert body["errors"][0]["loc"] == ["body", "country"]
    users = [i for i in table_items("MONCORE_USERS_TABLE") if i["tenant_id"] == tenant.id]
    assert users == []  # nothing was created
    (audited,) = blocked(tenant)
    payload = json.loads(audited["payload"])
    assert payload["code"] == "geo_blocked" and payload["country"] == country
    assert payload["errors"][0]["reason"] == reason

    for allowed in ("FR", "GB"):
        made = create_user(call, tenant, allowed)
        assert made.status == 201 and made.json()["tier"] == "tier_0", made.json()


def test_a_tenant_cannot_serve_a_fatf_listed_country(call: Any, admin_key: str) -> None:
    got = call(
        "POST", "/admin/v1/tenants", key=admin_key, json={"name": "X", "jurisdictions": ["FR", "MM"]}, headers=idem()
    )
    assert got.status == 422 and got.json()["code"] == "geo_blocked", got.json()


def test_postings_recheck_the_users_country(call: Any, admin_key: str) -> None:
    """A user whose country is no longer allowed (the FATF list changed after it was onboarded, simulated by
    editing its record) can neither send nor receive; the refusal posts nothing and is audited."""
    tenant = tenant_in(call, admin_key, ["FR"])
    alice, bob = new_user(call, tenant), new_user(call, tenant)
    a, b = new_account(call, tenant, alice), new_account(call, tenant, bob)
    fund(call, tenant, a, 5_000)
    users = boto3.resource("dynamodb").Table(os.environ["MONCORE_USERS_TABLE"])
    users.update_item(
        Key={"pk": f"{tenant.id}#{bob}"}, UpdateExpression="SET country = :c", ExpressionAttributeValues={":c": "IR"}
    )
    before = len(ledger_items(tenant.id))
    body = {"from_account_id": a, "to_account_id": b, "amount_minor": 100, "currency": "EUR"}
    sent = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body)
    assert sent.status == 422 and sent.json()["code"] == "geo_blocked", sent.json()
    funding = {"account_id": b, "amount_minor": 100, "currency": "EUR"}
    funded = call("POST", "/v1/fundings", key=tenant.key, headers=idem(), json=funding)
    assert funded.status == 422 and funded.json()["code"] == "geo_blocked", funded.json()
    assert len(ledger_items(tenant.id)) == before
    assert len(blocked(tenant)) == 2

    # Alice, still allowed, keeps working; her transfer records the geo check of both users.
    c = new_account(call, tenant, new_user(call, tenant))
    ok = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body | {"to_account_id": c})
    assert ok.status == 201, ok.json()
    geo = [check for check in ok.json()["compliance"]["checks"] if check.get("check") == "geo"]
    assert {check["country"] for check in geo} == {"FR"} and len(geo) == 2
