"""Sanctions screening wired into the kernel, through the API on DynamoDB Local with the real engine and lists: users
refused or put under review at creation, their money stopped, officers' decisions (false positives remembered), tenant
watchlists (routes, roles), the re-screening job, and the beneficiary gate.

Subjects (see tests/unit/test_screening_policy.py): French nationals on both lists, so a French user with their name
is a confirmed match: OFAC 18632 "KONIG, Emilie", UN QDi.378 "MAXIME HAUCHARD" (alias "Abou Abdallah al Faransi",
born 1992-03-17; OFAC 18637), OFAC 17294 / UN QDi.388 "BENGHALEM, Salim", OFAC 18633 / UN QDi.376 "PETER CHERIF";
UN QDi.341 "KEVIN JORDAN AXEL GUIAVARCH" (a missing name: possible).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.integration.helpers import Tenant, fund, idem, new_account, new_tenant, new_user, table_items

pytestmark = pytest.mark.xdist_group("integration")

HAUCHARD = {("ofac_sdn", "18637"), ("un_consolidated", "QDi.378")}


@pytest.fixture(scope="module")
def keys(local_backend: Any) -> dict[str, str]:
    from infra.local_stack import create_admin_key

    roles = ("viewer", "operator", "compliance_officer")
    return {role: create_admin_key(name=f"screening-{role}", role=role)[1] for role in roles}


def create_user(call: Any, tenant: Tenant, full_name: str, **extra: str) -> Any:
    body = {"external_ref": uuid.uuid4().hex, "full_name": full_name, "country": "FR", **extra}
    return call("POST", "/v1/users", key=tenant.key, headers=idem(), json=body)


def payload(item: dict[str, Any]) -> dict[str, Any]:
    raw = item["payload"]
    return dict(json.loads(raw) if isinstance(raw, str) else raw)


def audits(tenant_id: str, action: str) -> list[dict[str, Any]]:
    found = [i for i in table_items("MONCORE_AUDIT_TABLE") if i["tenant_id"] == tenant_id and i["action"] == action]
    return sorted(found, key=lambda item: str(item["recorded_at"]))


def screening_cases(call: Any, key: str, tenant: Tenant) -> list[dict[str, Any]]:
    listed = call("GET", "/admin/v1/cases", key=key, query={"tenant_id": tenant.id})
    assert listed.status == 200, listed.json()
    return [case for case in listed.json()["items"] if case["kind"] == "screening_hit"]


def user_item(tenant: Tenant, user_id: str) -> dict[str, Any]:
    return next(i for i in table_items("MONCORE_USERS_TABLE") if i["pk"] == f"{tenant.id}#{user_id}")


def rescreen(tenant: Tenant) -> dict[str, Any]:
    from moncore.ledger.jobs import run_job

    result = run_job("rescreen", tenant.id)
    assert result["tenants"] == 1
    return dict(result["results"][0])


def add_entry(call: Any, key: str, tenant: Tenant, body: dict[str, Any]) -> Any:
    return call("POST", f"/admin/v1/tenants/{tenant.id}/watchlist", key=key, headers=idem(), json=body)


def test_listed_names_are_refused_at_creation_and_nothing_is_created(call: Any, admin_key: str) -> None:
    tenant = new_tenant(call, admin_key, "Screening refusals")
    expected = {
        "Émilie König": ("ofac_sdn", "18632"),  # accented
        "Abou Abdallah al Faransi": ("un_consolidated", "QDi.378"),  # a UN alias
        "Benghalem Salim": ("ofac_sdn", "17294"),  # reordered
        "PETER CHERIF": ("un_consolidated", "QDi.376"),
    }
    for name, entry in expected.items():
        refused = create_user(call, tenant, name)
        assert refused.status == 422, refused.json()
        problem = refused.json()
        assert problem["code"] == "compliance_blocked"
        assert "confirmed sanctions screening match" in problem["detail"]
        assert {"list": entry[0], "entry_id": entry[1]}.items() <= next(
            error for error in problem["errors"] if (error["list"], error["entry_id"]) == entry
        ).items()
    assert [i for i in table_items("MONCORE_USERS_TABLE") if i["tenant_id"] == tenant.id] == []
    assert [i for i in table_items("MONCORE_GUARDS_TABLE") if i["pk"].startswith(f"{tenant.id}#user_ref#")] == []
    assert screening_cases(call, admin_key, tenant) == []
    refusals = audits(tenant.id, "compliance.blocked")
    assert len(refusals) == len(expected)
    for refusal, entry in zip(refusals, expected.values(), strict=True):
        recorded = payload(refusal)
        assert recorded["operation"] == "user.create" and recorded["code"] == "compliance_blocked"
        assert recorded["screening"]["status"] == "confirmed"
        assert entry in {(hit["list"], hit["entry_id"]) for hit in recorded["screening"]["hits"]}


def test_a_possible_hit_creates_the_user_pending_review_with_one_case_and_stops_its_money(
    call: Any, admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "Screening possible")
    made = create_user(call, tenant, "Maxime Hauchard", date_of_birth="1990-01-01")  # not the listed 1992-03-17
    assert made.status == 201, made.json()
    user_id = made.json()["id"]
    assert made.json()["screening_status"] == "pending_review"
    assert call("GET", f"/v1/users/{user_id}", key=tenant.key).json()["screening_status"] == "pending_review"
    (case,) = screening_cases(call, admin_key, tenant)
    assert (case["subject_user_id"], case["status"], case["opened_by"]) == (user_id, "OPEN", "system:screening")
    assert "ofac_sdn entry 18637" in case["reason"] and "un_consolidated entry QDi.378" in case["reason"]
    assert "differs from the listed" in case["reason"]
    stored = user_item(tenant, user_id)
    assert stored["screening_case_id"] == case["id"] and stored["screening_lists_version"]
    created = payload(audits(tenant.id, "user.created")[0])
    assert created["screening"]["status"] == "pending_review"
    assert {(hit["list"], hit["entry_id"]) for hit in created["screening"]["hits"]} == HAUCHARD
    assert len(audits(tenant.id, "case.opened")) == 1

    payer = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, payer, 5_000)
    pending_account = new_account(call, tenant, user_id)
    body = {"from_account_id": payer, "to_account_id": pending_account, "amount_minor": 100, "currency": "EUR"}
    refused = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body)
    assert refused.status == 422 and refused.json()["code"] == "compliance_blocked", refused.json()
    assert user_id in refused.json()["detail"] and case["id"] in refused.json()["detail"]

    frozen = call(
        "POST",
        f"/admin/v1/cases/{case['id']}/decisions",
        key=admin_key,
        headers=idem(),
        json={"outcome": "frozen", "reason": "the listed person: documents match"},
    )
    assert frozen.status == 200, frozen.json()
    user = call("GET", f"/v1/users/{user_id}", key=tenant.key).json()
    assert (user["status"], user["screening_status"]) == ("frozen", "confirmed")
    assert [payload(a)["case_id"] for a in audits(tenant.id, "screening.confirmed")] == [case["id"]]


def test_no_action_clears_the_user_and_the_false_positive_is_remembered_across_rescreens(
    call: Any, keys: dict[str, str], admin_key: str
) -> None:
    officer = keys["compliance_officer"]
    tenant = new_tenant(call, admin_key, "Screening false positive")
    user_id = create_user(call, tenant, "Maxime Hauchard", date_of_birth="1990-01-01").json()["id"]
    (case,) = screening_cases(call, officer, tenant)
    decided = call(
        "POST",
        f"/admin/v1/cases/{case['id']}/decisions",
        key=officer,
        headers=idem(),
        json={"outcome": "no_action", "reason": "another Maxime Hauchard: born 1990 in Lyon, passport checked"},
    )
    assert decided.status == 200, decided.json()
    assert decided.json()["status"] == "CLOSED" and decided.json()["outcome"] == "no_action"
    assert call("GET", f"/v1/users/{user_id}", key=tenant.key).json()["screening_status"] == "clear"
    remembered = {
        (item["user_id"], item["list_name"], item["entry_id"], item["case_id"])
        for item in table_items("MONCORE_SCREENING_TABLE")
        if item.get("tenant_id") == tenant.id and "user_id" in item
    }
    assert remembered == {(user_id, *key, case["id"]) for key in HAUCHARD}
    (cleared,) = audits(tenant.id, "screening.false_positive")
    assert payload(cleared)["false_positives"] == sorted(f"{a}:{b}" for a, b in HAUCHARD)
    assert payload(audits(tenant.id, "case.decided")[0])["screening"]["screening_status"] == "clear"

    unchanged = rescreen(tenant)  # nothing changed since the decision screened the user again
    assert (unchanged["screened"], unchanged["cases_opened"]) == (0, [])

    # A new entry (the tenant's own list) changes the lists version: the user is screened again, the cleared OFAC
    # and UN entries stay suppressed, and only the new entry opens a case.
    entry = add_entry(
        call,
        officer,
        tenant,
        {"name": "Maxime Hauchard", "date_of_birth": "1950-01-01", "country": "FR", "reason": "chargeback fraud"},
    )
    assert entry.status == 201, entry.json()
    again = rescreen(tenant)
    assert again["screened"] == 1 and again["suppressed"] == 2 and len(again["cases_opened"]) == 1
    new_case = call("GET", f"/admin/v1/cases/{again['cases_opened'][0]}", key=officer).json()
    assert (
        new_case["subject_user_id"] == user_id and f"tenant:watchlist entry {entry.json()['id']}" in new_case["reason"]
    )
    assert "ofac_sdn" not in new_case["reason"] and "un_consolidated" not in new_case["reason"]
    assert call("GET", f"/v1/users/{user_id}", key=tenant.key).json()["screening_status"] == "pending_review"
    assert len(screening_cases(call, officer, tenant)) == 2
    assert rescreen(tenant)["cases_opened"] == []  # the pending user's open case covers it


def test_a_watchlist_entry_added_later_is_caught_by_the_rescreen_job(
    call: Any, keys: dict[str, str], admin_key: str
) -> None:
    officer = keys["compliance_officer"]
    tenant = new_tenant(call, admin_key, "Screening watchlist")
    made = create_user(call, tenant, "Odile Vantrier")
    assert made.status == 201 and made.json()["screening_status"] == "clear"
    user_id = made.json()["id"]
    bystander = new_user(call, tenant)
    nothing = rescreen(tenant)
    assert (nothing["screened"], nothing["unchanged"], nothing["cases_opened"]) == (0, 2, [])

    entry = add_entry(
        call, officer, tenant, {"name": "Odile Vantrier", "aliases": ["O. Vantrier"], "country": "FR", "reason": "mule"}
    )
    assert entry.status == 201, entry.json()
    entry_id = entry.json()["id"]
    assert entry.json()["list"] == "tenant:watchlist" and entry.json()["status"] == "active"
    checked = call("POST", "/v1/screening/checks", key=tenant.key, json={"name": "Odile Vantrier"}).json()
    assert ("tenant:watchlist", entry_id) in {(m["list"], m["entry_id"]) for m in checked["matches"]}
    assert create_user(call, tenant, "Vantrier Odile").status == 422  # new users meet the watchlist at creation
    other_tenant = new_tenant(call, admin_key, "Screening other tenant")
    assert create_user(call, other_tenant, "Odile Vantrier").status == 201  # another tenant's list is not screened

    caught = rescreen(tenant)
    assert caught["screened"] == 2 and caught["confirmed"] == [user_id] and len(caught["cases_opened"]) == 1
    user = call("GET", f"/v1/users/{user_id}", key=tenant.key).json()
    assert (user["status"], user["screening_status"]) == ("frozen", "confirmed")
    assert call("GET", f"/v1/users/{bystander}", key=tenant.key).json()["screening_status"] == "clear"
    (case,) = screening_cases(call, officer, tenant)
    assert case["id"] == caught["cases_opened"][0] and f"tenant:watchlist entry {entry_id}" in case["reason"]
    assert [payload(a)["user_id"] for a in audits(tenant.id, "screening.confirmed")] == [user_id]
    assert len(audits(tenant.id, "user.frozen")) == 1

    repeat = rescreen(tenant)  # idempotent: nothing changed, nobody screened, nothing opened
    assert (repeat["screened"], repeat["cases_opened"], repeat["confirmed"]) == (0, [], [])

    gone = call(
        "POST",
        f"/admin/v1/tenants/{tenant.id}/watchlist/{entry_id}/deactivate",
        key=officer,
        json={"reason": "listed in error"},
    )
    assert gone.status == 200 and gone.json()["status"] == "inactive", gone.json()
    listed = call("GET", f"/admin/v1/tenants/{tenant.id}/watchlist", key=officer, query={"include_inactive": "true"})
    assert listed.json()["version"] == 2 and [e["status"] for e in listed.json()["items"]] == ["inactive"]
    assert call("GET", f"/admin/v1/tenants/{tenant.id}/watchlist", key=officer).json()["items"] == []
    after = rescreen(tenant)  # a confirmed user stays confirmed (and frozen): only an officer's decision changes that
    assert after["screened"] == 2 and after["cases_opened"] == []
    assert call("GET", f"/v1/users/{user_id}", key=tenant.key).json()["screening_status"] == "confirmed"
    assert len(audits(tenant.id, "screening.watchlist_entry_added")) == 1
    assert len(audits(tenant.id, "screening.watchlist_entry_deactivated")) == 1


def test_watchlist_routes_are_for_compliance_officers_and_admins(
    call: Any, keys: dict[str, str], admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "Screening roles")
    path = f"/admin/v1/tenants/{tenant.id}/watchlist"
    body = {"name": "Someone Listed", "reason": "internal"}
    for role in ("viewer", "operator"):
        assert add_entry(call, keys[role], tenant, body).status == 403
        assert call("GET", path, key=keys[role]).status == 403
        denied = call("POST", f"{path}/wle_x/deactivate", key=keys[role], json={"reason": "r"})
        assert denied.status == 403
    assert call("GET", path, key=tenant.key).status in {401, 403}
    made = add_entry(call, keys["compliance_officer"], tenant, body)
    assert made.status == 201 and made.json()["created_by"].startswith("key:")
    assert add_entry(call, admin_key, tenant, body | {"name": "Other Listed"}).status == 201
    assert call("GET", path, key=keys["compliance_officer"]).json()["version"] == 2
    assert add_entry(call, admin_key, tenant, {"name": "No Reason"}).status == 422
    assert add_entry(call, admin_key, tenant, body | {"country": "XX"}).status == 422
    missing = call("POST", "/admin/v1/tenants/t_nope/watchlist", key=admin_key, headers=idem(), json=body)
    assert missing.status == 404
    again = call("POST", f"{path}/{made.json()['id']}/deactivate", key=admin_key, json={"reason": "r"})
    assert again.status == 200
    twice = call("POST", f"{path}/{made.json()['id']}/deactivate", key=admin_key, json={"reason": "r"})
    assert twice.status == 409 and twice.json()["code"] == "invalid_state_transition"


def test_the_beneficiary_gate_blocks_confirmed_and_returns_possible_for_review(call: Any, admin_key: str) -> None:
    from moncore.compliance.screening.gate import ScreeningGate
    from moncore.domain.context import Caller
    from moncore.domain.errors import ComplianceBlocked

    tenant = new_tenant(call, admin_key, "Screening beneficiaries")
    gate = ScreeningGate()
    caller = Caller(tenant.id, "key:test", "tenant", "corr-beneficiary")
    with pytest.raises(ComplianceBlocked) as blocked:
        gate.screen_beneficiary(caller, subject_id="txn_blocked", name="Peter Cherif", country="FR")
    assert blocked.value.code == "compliance_blocked" and "beneficiary 'Peter Cherif'" in blocked.value.detail
    (refusal,) = audits(tenant.id, "compliance.blocked")
    assert refusal["subject_id"] == "txn_blocked" and refusal["correlation_id"] == "corr-beneficiary"
    assert payload(refusal)["screening"]["status"] == "confirmed"

    review = gate.screen_beneficiary(caller, subject_id="txn_review", name="Kevin Jordan Guiavarch", country="FR")
    assert review.review and review.check()["result"] == "review"
    assert ("un_consolidated", "QDi.341") in {(hit["list"], hit["entry_id"]) for hit in review.check()["hits"]}
    assert "un_consolidated entry QDi.341" in review.case_reason("txn_review")
    clear = gate.screen_beneficiary(caller, subject_id="txn_clear", name="Ada Lovelace", country="FR")
    assert not clear.review and clear.check()["result"] == "pass" and clear.check()["hits"] == []
    assert len(audits(tenant.id, "compliance.blocked")) == 1  # only the refusal is audited here
