"""AML rules through the API (docs/aml.md): every request is scored by the versioned rule set; allow posts, review
holds the funds and opens a case (in the same write), block answers 422 `compliance_blocked` and posts nothing; every
decision leaves exactly one AML event; the velocity counters move with the postings."""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, table_items

pytestmark = pytest.mark.xdist_group("integration")

EUR = 100  # minor units per euro
# Generous tier_0 limits, so the AML rules (not the tier limits) are what these tests meet.
LIMITS = {
    "tier_0": {
        "EUR": {
            "per_transaction_minor": 50_000 * EUR,
            "daily_minor": 100_000 * EUR,
            "monthly_minor": 500_000 * EUR,
            "balance_cap_minor": 500_000 * EUR,
        }
    }
}


@pytest.fixture(scope="module")
def officer(local_backend: Any) -> str:
    from infra.local_stack import create_admin_key

    return create_admin_key(name="aml-officer", role="compliance_officer")[1]


def aml_tenant(call: Any, admin_key: str) -> Tenant:
    """A tenant serving France and Bulgaria (on the FATF increased-monitoring list: a risk factor, not a block)."""
    body = {"name": "AML", "jurisdictions": ["FR", "BG"], "tier_limits": LIMITS}
    made = call("POST", "/admin/v1/tenants", key=admin_key, json=body, headers=idem())
    assert made.status == 201, made.json()
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    assert issued.status == 201, issued.json()
    return Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])


def account_of(call: Any, tenant: Tenant, country: str = "FR") -> tuple[str, str]:
    made = call(
        "POST",
        "/v1/users",
        key=tenant.key,
        headers=idem(),
        json={"external_ref": uuid.uuid4().hex, "full_name": "Grace Hopper", "country": country},
    )
    assert made.status == 201, made.json()
    user_id = made.json()["id"]
    return user_id, new_account(call, tenant, user_id)


def transfer(call: Any, tenant: Tenant, source: str, target: str, amount_minor: int, key: str | None = None) -> Any:
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": amount_minor, "currency": "EUR"}
    return call(
        "POST", "/v1/transfers", key=tenant.key, headers={"Idempotency-Key": key or str(uuid.uuid4())}, json=body
    )


def aml_events(call: Any, officer: str, tenant: Tenant, subject_id: str | None = None) -> list[dict[str, Any]]:
    query = {"tenant_id": tenant.id} | ({"subject_id": subject_id} if subject_id else {})
    got = call("GET", "/admin/v1/aml-events", key=officer, query=query)
    assert got.status == 200, got.json()
    return list(got.json()["items"])


def stored_aml_events(subject_id: str) -> list[dict[str, Any]]:
    """Read with plain boto3: what the table holds, not what the API says."""
    return [item for item in table_items("MONCORE_AML_EVENTS_TABLE") if item["subject_id"] == subject_id]


def legs_of(tenant: Tenant, txn_id: str) -> list[dict[str, Any]]:
    return [item for item in ledger_items(tenant.id) if item["pk"].endswith(f"#{txn_id}") and item["sk"] != "TXN"]


def test_an_ordinary_transfer_is_allowed_with_its_aml_event_and_moves_the_velocity(
    call: Any, admin_key: str, officer: str
) -> None:
    tenant = aml_tenant(call, admin_key)
    payer_user, payer = account_of(call, tenant)
    payee_user, payee = account_of(call, tenant)
    fund(call, tenant, payer, 100 * EUR)
    made = transfer(call, tenant, payer, payee, 30 * EUR)
    assert made.status == 201 and made.json()["status"] == "SETTLED", made.json()
    compliance = made.json()["compliance"]
    aml = next(check for check in compliance["checks"] if check.get("check") == "aml")
    assert compliance["decision"] == "allow"
    assert (aml["decision"], aml["score"], aml["reasons"], aml["ruleset"]) == ("allow", 0, [], "aml-2026.11-2")
    (event,) = aml_events(call, officer, tenant, made.json()["id"])
    assert event["inputs_sha256"] == aml["inputs_sha256"] and event["decision"] == "allow"
    assert len(stored_aml_events(made.json()["id"])) == 1
    # The inputs hash is the canonical hash of the recorded inputs: an outsider can recompute it.
    from moncore.domain.canonical import sha256_hex

    assert sha256_hex(event["inputs"]) == event["inputs_sha256"]
    velocity = {
        item["user_id"]: item
        for item in table_items("MONCORE_COUNTERS_TABLE")
        if item["pk"].startswith(f"{tenant.id}#vel#")
    }
    assert (velocity[payer_user]["oc_all"], velocity[payer_user]["oa_all"]) == (1, 30 * EUR)
    assert (velocity[payer_user]["ic_all"], velocity[payer_user]["ia_all"]) == (1, 100 * EUR)  # the funding
    assert (velocity[payee_user]["ic_all"], velocity[payee_user]["ia_all"]) == (1, 30 * EUR)


def test_a_review_holds_the_funds_opens_a_case_and_the_partner_cannot_move_them(
    call: Any, admin_key: str, officer: str
) -> None:
    tenant = aml_tenant(call, admin_key)
    payer_user, payer = account_of(call, tenant)
    _, payee = account_of(call, tenant, country="BG")
    fund(call, tenant, payer, 100 * EUR)
    made = transfer(call, tenant, payer, payee, 40 * EUR)
    assert made.status == 201, made.json()
    body = made.json()
    assert (body["status"], body["capture"], body["compliance"]["decision"]) == ("AUTHORIZED", "review", "review")
    assert "hold_expires_at" not in body  # a review hold never expires on its own
    case = call("GET", f"/admin/v1/cases/{body['compliance']['case_id']}", key=officer).json()
    assert (case["kind"], case["status"], case["txn_id"], case["subject_user_id"]) == (
        "aml_review",
        "OPEN",
        body["id"],
        payer_user,
    )
    assert "high_risk_country" in case["reason"]
    (event,) = aml_events(call, officer, tenant, body["id"])
    assert (event["decision"], event["score"], event["case_id"]) == ("review", 50, case["id"])
    assert [reason["rule"] for reason in event["reasons"]] == ["high_risk_country"]
    assert balance(call, tenant, payer)["available_minor"] == 60 * EUR
    assert balance(call, tenant, payee)["posted_minor"] == 0
    for action in ("capture", "void"):
        refused = call("POST", f"/v1/transactions/{body['id']}/{action}", key=tenant.key, headers=idem(), json={})
        assert refused.status == 409 and refused.json()["code"] == "invalid_state_transition", refused.json()
    # The case decision moves the money: released captures the hold.
    decided = call(
        "POST",
        f"/admin/v1/cases/{case['id']}/decisions",
        key=officer,
        headers=idem(),
        json={"outcome": "released", "reason": "family support, documented"},
    )
    assert decided.status == 200, decided.json()
    assert call("GET", f"/v1/transactions/{body['id']}", key=tenant.key).json()["status"] == "SETTLED"
    assert balance(call, tenant, payee)["posted_minor"] == 40 * EUR
    assert balance(call, tenant, payer)["posted_minor"] == 60 * EUR


def test_a_reviewed_funding_waits_in_pending_and_a_reversed_case_releases_it(
    call: Any, admin_key: str, officer: str
) -> None:
    tenant = aml_tenant(call, admin_key)
    _, account = account_of(call, tenant)
    made = call(
        "POST",
        "/v1/fundings",
        key=tenant.key,
        headers=idem(),
        json={"account_id": account, "amount_minor": 12_000 * EUR, "currency": "EUR"},
    )
    assert made.status == 201, made.json()
    body = made.json()
    assert (body["status"], body["compliance"]["decision"]) == ("AUTHORIZED", "review")
    (event,) = aml_events(call, officer, tenant, body["id"])
    assert [reason["rule"] for reason in event["reasons"]] == ["first_large_funding"]
    held = balance(call, tenant, account)
    assert (held["posted_minor"], held["pending_in_minor"], held["available_minor"]) == (0, 12_000 * EUR, 0)
    decided = call(
        "POST",
        f"/admin/v1/cases/{body['compliance']['case_id']}/decisions",
        key=officer,
        headers=idem(),
        json={"outcome": "reversed", "reason": "source of funds not evidenced"},
    )
    assert decided.status == 200, decided.json()
    after = balance(call, tenant, account)
    assert (after["posted_minor"], after["pending_in_minor"], after["available_minor"]) == (0, 0, 0)
    assert call("GET", f"/v1/transactions/{body['id']}", key=tenant.key).json()["status"] == "REVERSED"


def test_rapid_in_and_out_is_reviewed(call: Any, admin_key: str, officer: str) -> None:
    tenant = aml_tenant(call, admin_key)
    _, mule = account_of(call, tenant)
    _, onward = account_of(call, tenant)
    fund(call, tenant, mule, 800 * EUR)
    assert transfer(call, tenant, mule, onward, 100 * EUR).json()["compliance"]["decision"] == "allow"
    made = transfer(call, tenant, mule, onward, 650 * EUR)  # 750 of the 800 received leave within the hour
    assert made.status == 201 and made.json()["compliance"]["decision"] == "review", made.json()
    (event,) = aml_events(call, officer, tenant, made.json()["id"])
    assert [reason["rule"] for reason in event["reasons"]] == ["rapid_in_out"]
    assert event["inputs"]["payer"]["velocity"]["in_1h"] == [1, 800 * EUR]
    assert event["inputs"]["payer"]["velocity"]["out_1h"] == [1, 100 * EUR]


def test_two_red_flags_block_with_one_aml_event_and_no_leg_even_when_retried(
    call: Any, admin_key: str, officer: str
) -> None:
    tenant = aml_tenant(call, admin_key)
    _, payer = account_of(call, tenant)
    _, payee = account_of(call, tenant, country="BG")
    _, friend = account_of(call, tenant)
    fund(call, tenant, payer, 3_000 * EUR)
    assert transfer(call, tenant, payer, friend, 300 * EUR).json()["compliance"]["decision"] == "allow"
    key = str(uuid.uuid4())
    # Just below the EUR 1,000 threshold after an earlier payment today (structuring, 60) to a Bulgarian resident
    # (high-risk country, 50): 110 >= 100 blocks.
    for _ in range(2):
        refused = transfer(call, tenant, payer, payee, 950 * EUR, key=key)
        assert refused.status == 422 and refused.json()["code"] == "compliance_blocked", refused.json()
        assert {error["rule"] for error in refused.json()["errors"]} == {"structuring", "high_risk_country"}
    txn_id = derived_txn_id(tenant.id, key)
    assert legs_of(tenant, txn_id) == []
    (event,) = stored_aml_events(txn_id)
    assert (event["decision"], event["score"]) == ("block", 110)
    assert balance(call, tenant, payer)["available_minor"] == 2_700 * EUR
    assert balance(call, tenant, payee)["posted_minor"] == 0
    blocked = [
        item
        for item in table_items("MONCORE_AUDIT_TABLE")
        if item.get("subject_id") == txn_id and item["action"] == "compliance.blocked"
    ]
    assert len(blocked) == 1  # the retry is answered from the idempotency record: nothing decided twice
    # Without the idempotency record the request is decided again (and audited again), but the block stays one AML
    # event: the event is keyed by the transaction, never overwritten.
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_IDEMPOTENCY_TABLE"])
    table.delete_item(Key={"pk": f"{tenant.id}#{key}"})
    again = transfer(call, tenant, payer, payee, 950 * EUR, key=key)
    assert again.status == 422 and again.json()["code"] == "compliance_blocked"
    assert len(stored_aml_events(txn_id)) == 1 and legs_of(tenant, txn_id) == []
    audited = [i for i in table_items("MONCORE_AUDIT_TABLE") if i.get("subject_id") == txn_id]
    assert [i["action"] for i in audited] == ["compliance.blocked", "compliance.blocked"]


def test_structuring_alone_is_reviewed_not_blocked(call: Any, admin_key: str, officer: str) -> None:
    tenant = aml_tenant(call, admin_key)
    _, payer = account_of(call, tenant)
    _, payee = account_of(call, tenant)
    fund(call, tenant, payer, 5_000 * EUR)
    assert transfer(call, tenant, payer, payee, 200 * EUR).json()["compliance"]["decision"] == "allow"
    made = transfer(call, tenant, payer, payee, 999 * EUR)
    assert made.status == 201 and made.json()["compliance"]["decision"] == "review", made.json()
    assert next(c for c in made.json()["compliance"]["checks"] if c.get("check") == "aml")["score"] == 60


def derived_txn_id(tenant_id: str, key: str) -> str:
    from moncore.domain.ids import derived_id

    return derived_id("txn", tenant_id, key)


def test_the_aml_sweep_finds_a_pass_through_account_once_a_month(call: Any, admin_key: str, officer: str) -> None:
    from moncore.ledger.jobs import run_job

    tenant = aml_tenant(call, admin_key)
    mule_user, mule = account_of(call, tenant)
    _, onward = account_of(call, tenant)
    _, quiet = account_of(call, tenant)
    for _ in range(2):
        fund(call, tenant, mule, 6_000 * EUR)
    fund(call, tenant, quiet, 6_000 * EUR)
    # 10,000 of 12,000 leave: below the per-request rapid in-and-out share (90 %), above the sweep's (80 %).
    assert transfer(call, tenant, mule, onward, 10_000 * EUR).json()["compliance"]["decision"] == "allow"

    first = run_job("aml_sweep", tenant.id)["results"][0]
    assert first["cases_opened"] == [mule_user] and first["accounts_checked"] == 3
    cases = call("GET", "/admin/v1/cases", key=officer, query={"tenant_id": tenant.id}).json()["items"]
    (case,) = [c for c in cases if c["subject_user_id"] == mule_user]
    assert case["kind"] == "aml_review" and "pass_through_30d" in case["reason"] and case["txn_id"] is None
    (event,) = stored_aml_events(mule_user)
    assert (event["operation"], event["decision"], event["case_id"]) == ("sweep", "review", case["id"])
    again = run_job("aml_sweep", tenant.id)["results"][0]
    assert again["cases_opened"] == [] and len(stored_aml_events(mule_user)) == 1
    runs = [
        i for i in table_items("MONCORE_AUDIT_TABLE") if i["tenant_id"] == tenant.id and i["action"] == "job.aml_sweep"
    ]
    assert len(runs) == 2
