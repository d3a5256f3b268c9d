"""Case management (admin plane): open, assign, note, escalate, decide; role checks; decisions move held funds
through the ledger, once; every action audited."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture(scope="module")
def keys(local_backend: Any) -> dict[str, str]:
    from infra.local_stack import create_admin_key

    return {role: create_admin_key(name=f"cases-{role}", role=role)[1] for role in ("viewer", "compliance_officer")}


@pytest.fixture
def held(call: Any, admin_key: str) -> tuple[Tenant, str, str, str]:
    """A tenant with a payer, a payee and a 40.00 hold (what a review decision leaves)."""
    tenant = new_tenant(call, admin_key, "Cases")
    payer = new_account(call, tenant, new_user(call, tenant))
    payee = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, payer, 10_000)
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 4_000, "currency": "EUR"}
    made = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body | {"capture": "manual"})
    assert made.status == 201
    return tenant, payer, payee, made.json()["id"]


def post(call: Any, key: str, path: str, body: dict[str, Any], idem_key: str | None = None) -> Any:
    headers = {"Idempotency-Key": idem_key} if idem_key else idem()
    return call("POST", path, key=key, headers=headers, json=body)


def open_case(call: Any, key: str, tenant: Tenant, txn_id: str) -> dict[str, Any]:
    made = post(
        call,
        key,
        "/admin/v1/cases",
        {"tenant_id": tenant.id, "kind": "aml_review", "reason": "structuring?", "txn_id": txn_id},
    )
    assert made.status == 201, made.json()
    return dict(made.json())


def test_an_officer_works_a_case_and_releasing_it_captures_the_hold(
    call: Any, keys: dict[str, str], held: tuple[Tenant, str, str, str]
) -> None:
    tenant, payer, payee, txn_id = held
    officer, viewer = keys["compliance_officer"], keys["viewer"]
    case = open_case(call, officer, tenant, txn_id)
    assert (case["status"], case["kind"], case["txn_id"]) == ("OPEN", "aml_review", txn_id)
    assert post(call, viewer, "/admin/v1/cases", {"tenant_id": tenant.id, "reason": "x"}).status == 403
    assert call("GET", f"/admin/v1/cases/{case['id']}", key=viewer).json()["id"] == case["id"]

    assigned = post(call, officer, f"/admin/v1/cases/{case['id']}/assign", {"assignee": "alice"})
    assert assigned.status == 200 and assigned.json()["status"] == "IN_REVIEW"
    noted = post(call, officer, f"/admin/v1/cases/{case['id']}/notes", {"text": "source of funds documented"})
    assert noted.status == 201 and noted.json()["notes"][0]["text"] == "source of funds documented"
    assert post(call, viewer, f"/admin/v1/cases/{case['id']}/notes", {"text": "no"}).status == 403
    listed = call("GET", "/admin/v1/cases", key=viewer, query={"tenant_id": tenant.id, "status": "IN_REVIEW"})
    assert [c["id"] for c in listed.json()["items"]] == [case["id"]]

    decision = {"outcome": "released", "reason": "legitimate salary"}
    decided = post(call, officer, f"/admin/v1/cases/{case['id']}/decisions", decision, "decide-1")
    assert decided.status == 200, decided.json()
    assert (decided.json()["status"], decided.json()["outcome"]) == ("CLOSED", "released")
    txn = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()
    assert txn["status"] == "SETTLED" and txn["lifecycle"][-1]["actor"].startswith("key:")
    assert balance(call, tenant, payer)["posted_minor"] == 6_000
    assert balance(call, tenant, payee)["available_minor"] == 4_000

    again = post(call, officer, f"/admin/v1/cases/{case['id']}/decisions", decision, "decide-1")
    assert again.status == 200 and again.headers["Idempotency-Replayed"] == "true"
    other = post(call, officer, f"/admin/v1/cases/{case['id']}/decisions", {"outcome": "reversed", "reason": "no"})
    assert other.status == 409 and other.json()["code"] == "invalid_state_transition"
    assert balance(call, tenant, payer)["posted_minor"] == 6_000  # nothing moved twice

    audit = boto3.resource("dynamodb").Table(os.environ["MONCORE_AUDIT_TABLE"])
    actions = [
        i["action"]
        for i in audit.scan(ConsistentRead=True)["Items"]
        if i.get("subject_id") == case["id"] and i["tenant_id"] == tenant.id
    ]
    assert sorted(actions) == ["case.assigned", "case.decided", "case.noted", "case.opened"]


def test_an_escalated_case_is_decided_by_an_admin_and_reversed_funds_return(
    call: Any, admin_key: str, keys: dict[str, str], held: tuple[Tenant, str, str, str]
) -> None:
    tenant, payer, _, txn_id = held
    officer = keys["compliance_officer"]
    case = open_case(call, officer, tenant, txn_id)
    escalated = post(call, officer, f"/admin/v1/cases/{case['id']}/escalate", {"reason": "large amount"})
    assert escalated.status == 200 and escalated.json()["status"] == "ESCALATED"
    decision = {"outcome": "reversed", "reason": "mule account"}
    assert post(call, officer, f"/admin/v1/cases/{case['id']}/decisions", decision).status == 403
    assert call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()["status"] == "AUTHORIZED"
    decided = post(call, admin_key, f"/admin/v1/cases/{case['id']}/decisions", decision)
    assert decided.status == 200 and decided.json()["decided_by"].startswith("key:")
    assert call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()["status"] == "REVERSED"
    assert balance(call, tenant, payer)["available_minor"] == 10_000


def test_reversing_a_settled_payment_posts_a_linked_reversal(
    call: Any, keys: dict[str, str], held: tuple[Tenant, str, str, str]
) -> None:
    tenant, payer, payee, _ = held
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 1_000, "currency": "EUR"}
    settled = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body).json()
    case = open_case(call, keys["compliance_officer"], tenant, settled["id"])
    decided = post(
        call,
        keys["compliance_officer"],
        f"/admin/v1/cases/{case['id']}/decisions",
        {"outcome": "reversed", "reason": "fraud"},
    )
    assert decided.status == 200, decided.json()
    payload = json.dumps(decided.json())
    assert "CLOSED" in payload
    view = call("GET", f"/v1/transactions/{settled['id']}", key=tenant.key).json()
    assert view["reversed_minor"] == 1_000 and len(view["reversals"]) == 1


def test_bad_case_requests_are_refused(call: Any, keys: dict[str, str], held: tuple[Tenant, str, str, str]) -> None:
    tenant, _, _, txn_id = held
    officer = keys["compliance_officer"]
    assert post(call, officer, "/admin/v1/cases", {"tenant_id": "ten_missing", "reason": "x"}).status == 404
    assert (
        post(call, officer, "/admin/v1/cases", {"tenant_id": tenant.id, "reason": "x", "txn_id": "txn_nope"}).status
        == 404
    )
    assert post(call, officer, "/admin/v1/cases", {"tenant_id": tenant.id, "reason": ""}).status == 422
    assert call("GET", "/admin/v1/cases/case_missing", key=officer).status == 404
    no_txn = post(call, officer, "/admin/v1/cases", {"tenant_id": tenant.id, "reason": "watch"}).json()
    refused = post(call, officer, f"/admin/v1/cases/{no_txn['id']}/decisions", {"outcome": "released", "reason": "r"})
    assert refused.status == 422
    assert (
        call("GET", "/admin/v1/cases", key=officer, query={"tenant_id": tenant.id, "cursor": "garbage"}).status == 422
    )
    assert call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()["status"] == "AUTHORIZED"


def test_a_frozen_outcome_freezes_the_user_who_can_then_neither_send_nor_receive(
    call: Any, keys: dict[str, str], held: tuple[Tenant, str, str, str]
) -> None:
    tenant, payer, payee, _ = held
    user_id = call("GET", f"/v1/accounts/{payer}", key=tenant.key).json()["user_id"]
    officer = keys["compliance_officer"]
    case = post(
        call, officer, "/admin/v1/cases", {"tenant_id": tenant.id, "reason": "mule", "subject_user_id": user_id}
    )
    decided = post(
        call, officer, f"/admin/v1/cases/{case.json()['id']}/decisions", {"outcome": "frozen", "reason": "r"}
    )
    assert decided.status == 200 and decided.json()["outcome"] == "frozen"
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 100, "currency": "EUR"}
    refused = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body)
    assert refused.status == 422 and refused.json()["code"] == "account_frozen"
