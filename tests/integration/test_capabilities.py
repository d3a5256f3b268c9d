"""Capability management through the admin API (issue 4 part 1): four-eyes for live, immediate disable/shadow, roles,
the partner-side gate (403 capability_disabled, shadow decisions recorded) and the audit trail, read raw."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr

from tests.integration.helpers import Tenant, fund, idem, ledger_items, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture(scope="module")
def keys(local_backend: Any, admin_key: str) -> dict[str, tuple[str, str]]:
    """(key id, api key) per persona: two more admins, an operator, a compliance officer, a viewer."""
    from infra.local_stack import create_admin_key

    return {
        "admin_a": create_admin_key(name="cap-admin-a", role="admin"),
        "admin_b": create_admin_key(name="cap-admin-b", role="admin"),
        "admin_c": create_admin_key(name="cap-admin-c", role="admin"),
        "operator": create_admin_key(name="cap-operator", role="operator"),
        "compliance": create_admin_key(name="cap-compliance", role="compliance_officer"),
        "viewer": create_admin_key(name="cap-viewer", role="viewer"),
    }


def change(call: Any, key: str, tenant_id: str, capability: str, mode: str, **extra: Any) -> Any:
    body = {"capability": capability, "mode": mode} | extra
    return call("POST", f"/admin/v1/tenants/{tenant_id}/capabilities", key=key, json=body, headers=idem())


def decide(call: Any, key: str, tenant_id: str, request_id: str, verb: str, **body: Any) -> Any:
    path = f"/admin/v1/tenants/{tenant_id}/capability-requests/{request_id}/{verb}"
    return call("POST", path, key=key, json=body)


def mode_of(call: Any, admin_key: str, tenant_id: str, capability: str) -> str:
    got = call("GET", f"/admin/v1/tenants/{tenant_id}", key=admin_key)
    assert got.status == 200, got.json()
    return str(got.json()["capabilities"][capability])


def audit_events(tenant_id: str, prefix: str = "capability.") -> list[dict[str, Any]]:
    """The tenant's audit events whose action starts with `prefix`, oldest first, read raw from the Audit table."""
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_AUDIT_TABLE"])
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "ConsistentRead": True,
        "FilterExpression": Attr("tenant_id").eq(tenant_id) & Attr("action").begins_with(prefix),
    }
    while True:
        page = table.scan(**kwargs)
        found.extend(item | {"payload": json.loads(str(item["payload"]))} for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return sorted(found, key=lambda item: str(item["sk"]))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def approval_item(tenant_id: str, request_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_APPROVALS_TABLE"])
    item = table.get_item(Key={"pk": tenant_id, "sk": f"capability#{request_id}"}, ConsistentRead=True).get("Item")
    assert item is not None
    return dict(item)


def transfer(call: Any, tenant: Tenant, source: str, target: str, amount_minor: int = 100, **headers: str) -> Any:
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": amount_minor, "currency": "EUR"}
    return call("POST", "/v1/transfers", key=tenant.key, json=body, headers=idem() | headers)


@pytest.fixture
def funded(call: Any, admin_key: str) -> tuple[Tenant, str, str]:
    """A tenant with two accounts of one user, the first funded with 10.00 EUR."""
    tenant = new_tenant(call, admin_key, "Capabilities")
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 1_000)
    return tenant, a, b


def test_going_live_needs_a_second_admin_and_then_gates_the_partner_route(
    call: Any, keys: dict[str, tuple[str, str]], admin_key: str, funded: tuple[Tenant, str, str]
) -> None:
    tenant, a, b = funded
    operator_id, operator = keys["operator"]
    approver_id, approver = keys["admin_b"]
    off = change(call, operator, tenant.id, "transfers", "disabled", contract_ref="CTR-0")
    assert off.status == 200 and off.json()["status"] == "APPLIED"
    assert transfer(call, tenant, a, b).status == 403

    requested = change(call, operator, tenant.id, "transfers", "live", contract_ref="ISSUER-2026-001")
    assert requested.status == 202, requested.json()
    request = requested.json()
    assert request["status"] == "PENDING" and request["requested_by"] == f"key:{operator_id}"
    assert (request["capability"], request["mode"], request["previous_mode"]) == ("transfers", "live", "disabled")
    # Pending is not live: the partner is still refused.
    refused = transfer(call, tenant, a, b)
    assert refused.status == 403 and refused.json()["code"] == "capability_disabled"

    approved = decide(call, approver, tenant.id, request["id"], "approve", reason="contract signed")
    assert approved.status == 200, approved.json()
    assert approved.json()["status"] == "APPROVED" and approved.json()["decided_by"] == f"key:{approver_id}"
    assert mode_of(call, admin_key, tenant.id, "transfers") == "live"
    moved = transfer(call, tenant, a, b, 250)
    assert moved.status == 201, moved.json()
    assert moved.json()["compliance"]["checks"][0] == {"capability": "transfers", "mode": "live"}

    # The approval is stored (raw) and audited with both admins and the contract.
    stored = approval_item(tenant.id, request["id"])
    assert (stored["status"], stored["requested_by"], stored["decided_by"]) == (
        "APPROVED",
        f"key:{operator_id}",
        f"key:{approver_id}",
    )
    applied = [e for e in audit_events(tenant.id) if e["action"] == "capability.changed" and e["payload"]["four_eyes"]]
    assert len(applied) == 1
    event = applied[0]
    assert event["actor"] == f"key:{approver_id}"
    expected = {
        "capability": "transfers",
        "from": "disabled",
        "to": "live",
        "contract_ref": "ISSUER-2026-001",
        "request_id": request["id"],
        "requested_by": f"key:{operator_id}",
        "approved_by": f"key:{approver_id}",
    }
    assert {name: event["payload"][name] for name in expected} == expected
    requested_events = [e for e in audit_events(tenant.id) if e["action"] == "capability.change_requested"]
    assert [e["actor"] for e in requested_events] == [f"key:{operator_id}"]

    # Approving again: the same approver gets the approval back; anyone else a 409; nothing is applied twice.
    again = decide(call, approver, tenant.id, request["id"], "approve")
    assert again.status == 200 and again.json()["status"] == "APPROVED"
    late = decide(call, keys["admin_c"][1], tenant.id, request["id"], "approve")
    assert late.status == 409 and late.json()["code"] == "invalid_state_transition"
    assert len([e for e in audit_events(tenant.id) if e["payload"].get("four_eyes")]) == 1


def test_the_requester_cannot_approve_their_own_request(
    call: Any, keys: dict[str, tuple[str, str]], admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "Four eyes")
    _, admin_a = keys["admin_a"]
    requested = change(call, admin_a, tenant.id, "withdrawals", "live", contract_ref="ISSUER-7")
    assert requested.status == 202, requested.json()
    own = decide(call, admin_a, tenant.id, requested.json()["id"], "approve")
    assert own.status == 403 and own.json()["code"] == "four_eyes_required"
    assert mode_of(call, admin_key, tenant.id, "withdrawals") == "disabled"
    assert approval_item(tenant.id, requested.json()["id"])["status"] == "PENDING"
    assert not [e for e in audit_events(tenant.id) if e["action"] == "capability.changed"]


def test_live_without_a_contract_reference_is_422_and_stores_nothing(
    call: Any, keys: dict[str, tuple[str, str]], admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "No contract")
    for extra in ({}, {"contract_ref": ""}, {"contract_ref": None}):
        refused = change(call, keys["operator"][1], tenant.id, "card_issuing", "live", **extra)
        assert refused.status == 422 and refused.json()["code"] == "validation_error", extra
    listed = call("GET", f"/admin/v1/tenants/{tenant.id}/capability-requests", key=admin_key)
    assert listed.status == 200 and listed.json()["items"] == []
    assert not audit_events(tenant.id)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"capability": "teleport", "mode": "live", "contract_ref": "X"}, "capability"),
        ({"capability": "fx", "mode": "on", "contract_ref": "X"}, "mode"),
        ({"capability": "fx", "mode": "disabled", "extra": 1}, "extra"),
    ],
)
def test_unknown_capabilities_and_modes_are_422(call: Any, admin_key: str, body: dict[str, Any], field: str) -> None:
    tenant = new_tenant(call, admin_key, "Bad body")
    got = call("POST", f"/admin/v1/tenants/{tenant.id}/capabilities", key=admin_key, json=body, headers=idem())
    assert got.status == 422 and field in str(got.json()["errors"])


def test_roles(call: Any, keys: dict[str, tuple[str, str]], admin_key: str) -> None:
    """Request/immediate change: operator or admin. Approve: admin only. Read: any admin role."""
    tenant = new_tenant(call, admin_key, "Roles")
    for persona in ("viewer", "compliance"):
        for mode, extra in (("live", {"contract_ref": "C-1"}), ("disabled", {})):
            refused = change(call, keys[persona][1], tenant.id, "fx", mode, **extra)
            assert refused.status == 403 and refused.json()["code"] == "forbidden", (persona, mode)
    request_id = change(call, keys["operator"][1], tenant.id, "card_issuing", "live", contract_ref="C-2").json()["id"]
    for persona in ("operator", "compliance", "viewer"):
        refused = decide(call, keys[persona][1], tenant.id, request_id, "approve")
        assert refused.status == 403 and refused.json()["code"] == "forbidden", persona
    for persona in ("viewer", "compliance"):
        assert decide(call, keys[persona][1], tenant.id, request_id, "reject").status == 403
    assert mode_of(call, admin_key, tenant.id, "fx") == "live"
    assert mode_of(call, admin_key, tenant.id, "card_issuing") == "disabled"
    listed = call("GET", f"/admin/v1/tenants/{tenant.id}/capability-requests", key=keys["viewer"][1])
    assert listed.status == 200 and [r["id"] for r in listed.json()["items"]] == [request_id]
    tenant_key_refused = change(call, new_tenant(call, admin_key).key, tenant.id, "fx", "disabled")
    assert tenant_key_refused.status in (401, 403)


def test_disabled_capability_answers_403_and_posts_nothing(
    call: Any, admin_key: str, funded: tuple[Tenant, str, str]
) -> None:
    tenant, a, b = funded
    before = len(ledger_items(tenant.id))
    assert change(call, admin_key, tenant.id, "transfers", "disabled").status == 200
    refused = transfer(call, tenant, a, b)
    assert refused.status == 403 and refused.json()["code"] == "capability_disabled"
    assert "disabled" in refused.json()["detail"]
    assert len(ledger_items(tenant.id)) == before
    # Other capabilities are unaffected; disabling fundings refuses fundings.
    assert change(call, admin_key, tenant.id, "fundings", "disabled").status == 200
    funding = call(
        "POST",
        "/v1/fundings",
        key=tenant.key,
        headers=idem(),
        json={"account_id": a, "amount_minor": 100, "currency": "EUR"},
    )
    assert funding.status == 403 and funding.json()["code"] == "capability_disabled"
    assert len(ledger_items(tenant.id)) == before
    changed = [e for e in audit_events(tenant.id) if e["action"] == "capability.changed"]
    assert [(e["payload"]["capability"], e["payload"]["from"], e["payload"]["to"]) for e in changed] == [
        ("transfers", "live", "disabled"),
        ("fundings", "live", "disabled"),
    ]
    assert all(e["payload"]["four_eyes"] is False and e["actor"].startswith("key:") for e in changed)


def test_shadow_mode_records_the_decision_and_moves_no_money(
    call: Any, admin_key: str, funded: tuple[Tenant, str, str]
) -> None:
    tenant, a, b = funded
    before = len(ledger_items(tenant.id))
    shadow = change(call, admin_key, tenant.id, "transfers", "shadow")
    assert shadow.status == 200 and shadow.json()["capabilities"]["transfers"] == "shadow"
    refused = transfer(call, tenant, a, b, 300, **{"X-Correlation-Id": "shadow-probe-1"})
    assert refused.status == 403 and refused.json()["code"] == "capability_disabled"
    assert "shadow" in refused.json()["detail"]
    assert len(ledger_items(tenant.id)) == before
    assert call("GET", f"/v1/accounts/{a}", key=tenant.key).json()["balance"]["available_minor"] == 1_000
    decisions = [e for e in audit_events(tenant.id) if e["action"] == "capability.shadow_decision"]
    assert len(decisions) == 1
    assert decisions[0]["actor"] == f"key:{tenant.key_id}"
    assert decisions[0]["correlation_id"] == "shadow-probe-1"
    assert decisions[0]["payload"] == {
        "capability": "transfers",
        "mode": "shadow",
        "decision": "refused",
        "posted": False,
    }
    # A disabled capability refuses without recording a shadow decision.
    assert change(call, admin_key, tenant.id, "transfers", "disabled").status == 200
    assert transfer(call, tenant, a, b).status == 403
    assert len([e for e in audit_events(tenant.id) if e["action"] == "capability.shadow_decision"]) == 1


def test_rejected_and_expired_requests_cannot_be_approved(
    call: Any, keys: dict[str, tuple[str, str]], admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "Rejections")
    operator = keys["operator"][1]
    first = change(call, operator, tenant.id, "card_clearing", "live", contract_ref="C-9").json()["id"]
    rejected = decide(call, keys["admin_a"][1], tenant.id, first, "reject", reason="contract not countersigned")
    assert rejected.status == 200 and rejected.json()["status"] == "REJECTED"
    assert rejected.json()["reason"] == "contract not countersigned"
    late = decide(call, keys["admin_b"][1], tenant.id, first, "approve")
    assert late.status == 409 and late.json()["code"] == "invalid_state_transition"

    second = change(call, operator, tenant.id, "card_clearing", "live", contract_ref="C-10").json()["id"]
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_APPROVALS_TABLE"])
    table.update_item(
        Key={"pk": tenant.id, "sk": f"capability#{second}"},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": "2020-01-01T00:00:00.000000Z"},
    )
    got = call("GET", f"/admin/v1/tenants/{tenant.id}/capability-requests/{second}", key=keys["viewer"][1])
    assert got.status == 200 and got.json()["status"] == "EXPIRED"
    expired = decide(call, keys["admin_b"][1], tenant.id, second, "approve")
    assert expired.status == 409 and expired.json()["code"] == "invalid_state_transition"
    assert mode_of(call, admin_key, tenant.id, "card_clearing") == "disabled"
    actions = [e["action"] for e in audit_events(tenant.id)]
    assert actions.count("capability.change_requested") == 2 and actions.count("capability.change_rejected") == 1
    assert "capability.changed" not in actions

    by_status = call(
        "GET", f"/admin/v1/tenants/{tenant.id}/capability-requests", key=admin_key, query={"status": "REJECTED"}
    )
    assert [r["id"] for r in by_status.json()["items"]] == [first]
    expired_listed = call(
        "GET", f"/admin/v1/tenants/{tenant.id}/capability-requests", key=admin_key, query={"status": "EXPIRED"}
    )
    assert [r["id"] for r in expired_listed.json()["items"]] == [second]


def test_listing_pages_newest_first(call: Any, keys: dict[str, tuple[str, str]], admin_key: str) -> None:
    tenant = new_tenant(call, admin_key, "Listing")
    made = [
        change(call, keys["operator"][1], tenant.id, cap, "live", contract_ref=f"C-{cap}").json()["id"]
        for cap in ("card_issuing", "withdrawals", "settlement_finalization")
    ]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = call("GET", f"/admin/v1/tenants/{tenant.id}/capability-requests", key=admin_key, query=query)
        assert page.status == 200, page.json()
        seen.extend(r["id"] for r in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made))
    other = new_tenant(call, admin_key, "Other")
    foreign = call(
        "GET", f"/admin/v1/tenants/{other.id}/capability-requests", key=admin_key, query={"cursor": "bm9wZQ"}
    )
    assert foreign.status == 422
    missing = call("GET", f"/admin/v1/tenants/{other.id}/capability-requests/{made[0]}", key=admin_key)
    assert missing.status == 404  # a request is only found under its own tenant


def test_unknown_tenant_or_request_is_404(call: Any, keys: dict[str, tuple[str, str]], admin_key: str) -> None:
    assert change(call, admin_key, "ten_missing", "fx", "disabled").status == 404
    assert change(call, admin_key, "ten_missing", "fx", "live", contract_ref="C").status == 404
    tenant = new_tenant(call, admin_key, "Known")
    assert decide(call, keys["admin_b"][1], tenant.id, "apr_missing", "approve").status == 404


def test_concurrent_approvals_apply_once(call: Any, keys: dict[str, tuple[str, str]], admin_key: str) -> None:
    tenant = new_tenant(call, admin_key, "Race")
    request_id = change(call, keys["operator"][1], tenant.id, "withdrawals", "live", contract_ref="C-R").json()["id"]
    start = threading.Barrier(3)
    answers: list[Any] = []
    lock = threading.Lock()

    def approve(key: str) -> None:
        start.wait()
        got = decide(call, key, tenant.id, request_id, "approve")
        with lock:
            answers.append(got)

    threads = [threading.Thread(target=approve, args=(keys[p][1],)) for p in ("admin_a", "admin_b", "admin_c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status for a in answers) == [200, 409, 409], [a.json() for a in answers]
    assert mode_of(call, admin_key, tenant.id, "withdrawals") == "live"
    assert len([e for e in audit_events(tenant.id) if e["action"] == "capability.changed"]) == 1


def test_the_four_eyes_rule_is_also_a_condition_of_the_write(
    call: Any, keys: dict[str, tuple[str, str]], admin_key: str
) -> None:
    """Even a caller that skipped the service's check cannot approve its own request: the approval's conditional
    update refuses an approver equal to the requester, in the same transaction as the capability change."""
    from moncore.domain.audit import audit_event
    from moncore.domain.clock import now_rfc3339
    from moncore.store import capabilities as store

    tenant = new_tenant(call, admin_key, "Write condition")
    operator_id, operator = keys["operator"]
    request_id = change(call, operator, tenant.id, "withdrawals", "live", contract_ref="C-W").json()["id"]
    item = store.find_request(tenant.id, request_id)
    assert item is not None
    event = audit_event(
        tenant_id=tenant.id,
        action="capability.changed",
        actor=item.requested_by,
        correlation_id="t",
        subject_id=None,
        payload={},
    )
    change_ = store.ModeChange(tenant.id, "withdrawals", "live", "disabled")
    with pytest.raises(store.RequestDecided):
        store.approve(
            item, approved_by=f"key:{operator_id}", at=now_rfc3339(), reason=None, change=change_, audit=event
        )
    assert mode_of(call, admin_key, tenant.id, "withdrawals") == "disabled"
    assert approval_item(tenant.id, request_id)["status"] == "PENDING"
    assert not [e for e in audit_events(tenant.id) if e["action"] == "capability.changed"]
