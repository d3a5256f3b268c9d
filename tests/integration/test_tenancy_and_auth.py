"""Admin plane, API keys (shown once, stored hashed, revocable) and the authorizers' isolation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import idem, new_account, new_tenant, new_user, table_items

pytestmark = pytest.mark.xdist_group("integration")


def test_tenant_creation_starts_issuer_gated_capabilities_disabled(call: Any, admin_key: str) -> None:
    made = call(
        "POST",
        "/admin/v1/tenants",
        key=admin_key,
        headers=idem(),
        json={"name": "Gated", "jurisdictions": ["GB", "FR"]},
    )
    assert made.status == 201
    caps = made.json()["capabilities"]
    for gated in ("card_issuing", "card_clearing", "withdrawals", "settlement_finalization"):
        assert caps[gated] == "disabled"
    assert caps["transfers"] == "live"
    got = call("GET", f"/admin/v1/tenants/{made.json()['id']}", key=admin_key)
    assert got.status == 200 and got.json()["jurisdictions"] == ["FR", "GB"]


def test_key_secret_is_shown_once_and_stored_only_hashed(call: Any, admin_key: str) -> None:
    tenant = new_tenant(call, admin_key)
    headers = idem()
    issued = call("POST", f"/admin/v1/tenants/{tenant.id}/api-keys", key=admin_key, json={}, headers=headers)
    secret = issued.json()["api_key"].rsplit(".", 1)[1]
    replay = call("POST", f"/admin/v1/tenants/{tenant.id}/api-keys", key=admin_key, json={}, headers=headers)
    assert replay.status == 201 and replay.json()["api_key"] is None
    assert replay.json()["key_id"] == issued.json()["key_id"]
    for env_var in ("MONCORE_CREDENTIALS_TABLE", "MONCORE_IDEMPOTENCY_TABLE", "MONCORE_AUDIT_TABLE"):
        assert secret not in repr(table_items(env_var)), env_var


def test_revoked_key_is_refused(call: Any, admin_key: str) -> None:
    tenant = new_tenant(call, admin_key)
    assert call("GET", "/v1/users/usr_x", key=tenant.key).status == 404  # authorized, user unknown
    revoked = call("POST", f"/admin/v1/tenants/{tenant.id}/api-keys/{tenant.key_id}/revoke", key=admin_key, json={})
    assert revoked.status == 200 and revoked.json()["status"] == "revoked"
    refused = call("GET", "/v1/users/usr_x", key=tenant.key)
    assert refused.status == 401 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "unauthorized"


def test_revoking_another_tenants_key_is_404(call: Any, admin_key: str) -> None:
    a, b = new_tenant(call, admin_key), new_tenant(call, admin_key)
    got = call("POST", f"/admin/v1/tenants/{a.id}/api-keys/{b.key_id}/revoke", key=admin_key, json={})
    assert got.status == 404
    assert call("GET", "/v1/users/usr_x", key=b.key).status == 404  # b's key still works


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer nope",
        "Basic abc",
        "Bearer mc.key_00000000000000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_bad_credentials_are_401_problem_json(call: Any, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    got = call("GET", "/v1/users/usr_x", headers=headers)
    assert got.status == 401 and got.headers["Content-Type"] == "application/problem+json"
    assert got.json()["code"] == "unauthorized"
    assert got.headers.get("X-Correlation-Id")


def test_keys_only_reach_their_own_plane(call: Any, admin_key: str) -> None:
    tenant = new_tenant(call, admin_key)
    assert call("GET", "/v1/users/usr_x", key=admin_key).status == 403
    assert call("GET", f"/admin/v1/tenants/{tenant.id}", key=tenant.key).status == 403
    assert (
        call(
            "POST", "/admin/v1/tenants", key=tenant.key, headers=idem(), json={"name": "x", "jurisdictions": ["FR"]}
        ).status
        == 403
    )


def test_other_tenants_ids_answer_404(call: Any, admin_key: str) -> None:
    a, b = new_tenant(call, admin_key), new_tenant(call, admin_key)
    user = new_user(call, a)
    account = new_account(call, a, user)
    assert call("GET", f"/v1/users/{user}", key=b.key).status == 404
    assert call("GET", f"/v1/accounts/{account}", key=b.key).status == 404
    assert (
        call("POST", "/v1/accounts", key=b.key, headers=idem(), json={"user_id": user, "currency": "EUR"}).status == 404
    )


def test_unknown_route_is_problem_json(call: Any, admin_key: str) -> None:
    got = call("GET", "/v1/nothing-here", key=admin_key)
    assert got.status in (403, 404) and got.headers["Content-Type"] == "application/problem+json"


def test_viewer_role_cannot_create_tenants(call: Any) -> None:
    from moncore.tenancy.service import TenancyService

    viewer = TenancyService().create_admin_key(name="viewer", role="viewer").api_key
    got = call("POST", "/admin/v1/tenants", key=viewer, headers=idem(), json={"name": "x", "jurisdictions": ["FR"]})
    assert got.status == 403 and got.json()["code"] == "forbidden"
