"""Withdrawals over HTTP (docs/providers.md, "Withdrawals"): 403 capability_disabled until two admins make
`withdrawals` live; then beneficiary checks (IBAN, country, sanctions screening), the hold, the payout to the
provider and its webhook: SETTLED, or failed -> REVERSED with the funds back; a payout call that times out keeps
the hold and the retry with the same Idempotency-Key pays once.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, new_tenant
from tests.integration.open_banking_helpers import (
    MINIMAL,
    SANDBOX,
    audits,
    deliver,
    guard,
    holder,
    outbox,
    transaction,
    txn_items,
    use_provider,
)

pytestmark = pytest.mark.xdist_group("integration")

EUR = 100
IBAN = "FR1420041010050500013M02606"  # a valid French IBAN (mod-97)
DE_IBAN = "DE89370400440532013000"  # valid, but Germany is outside the test tenants' jurisdictions (FR)
INSTANT = "sandbox_open_banking_instant"


@pytest.fixture(scope="module")
def admins(local_backend: Any) -> dict[str, str]:
    from infra.local_stack import create_admin_key

    return {
        "b": create_admin_key(name="wd-admin-b", role="admin")[1],
        "officer": create_admin_key(name="wd-officer", role="compliance_officer")[1],
    }


def activate(call: Any, admin_key: str, second_admin: str, tenant: Tenant) -> None:
    """`withdrawals` goes live through the four-eyes flow: one admin asks (with the contract), another approves."""
    body = {"capability": "withdrawals", "mode": "live", "contract_ref": "issuer-onboarding-2026-11"}
    asked = call("POST", f"/admin/v1/tenants/{tenant.id}/capabilities", key=admin_key, json=body, headers=idem())
    assert asked.status == 202, asked.json()
    path = f"/admin/v1/tenants/{tenant.id}/capability-requests/{asked.json()['id']}/approve"
    approved = call("POST", path, key=second_admin, json={"reason": "issuer onboarded"})
    assert approved.status == 200 and approved.json()["status"] == "APPROVED", approved.json()


def live_tenant(call: Any, admin_key: str, admins: dict[str, str], name: str = "Withdrawals") -> Tenant:
    tenant = new_tenant(call, admin_key, name)
    activate(call, admin_key, admins["b"], tenant)
    return tenant


def funded(
    call: Any, admin_key: str, tenant: Tenant, amount_minor: int, scenario: str = "", provider: str = SANDBOX
) -> tuple[str, str]:
    """(external_ref, account) funded at once (instant adapter), then the tenant back on `provider` for payouts."""
    use_provider(call, admin_key, tenant, INSTANT)
    _, ref, account = holder(call, tenant, scenario)
    fund(call, tenant, account, amount_minor)
    use_provider(call, admin_key, tenant, provider)
    return ref, account


def withdraw(
    call: Any, tenant: Tenant, account: str, amount_minor: int, name: str = "Jean Dupont", iban: str = IBAN, **kw: Any
) -> Any:
    body = {
        "account_id": account,
        "amount_minor": amount_minor,
        "currency": "EUR",
        "beneficiary": {"name": name, "iban": iban},
    }
    headers = {"Idempotency-Key": kw.get("key") or str(uuid.uuid4())}
    return call("POST", "/v1/withdrawals", key=tenant.key, headers=headers, json=body)


def parts(call: Any, tenant: Tenant, account: str) -> tuple[int, int, int]:
    got = balance(call, tenant, account)
    return got["posted_minor"], got["pending_out_minor"], got["available_minor"]


def test_refused_until_two_admins_activate_then_held_sent_and_settled(
    call: Any, admin_key: str, admins: dict[str, str]
) -> None:
    tenant = new_tenant(call, admin_key, "Withdrawals gated")
    ref, account = funded(call, admin_key, tenant, 100 * EUR)
    refused = withdraw(call, tenant, account, 30 * EUR)
    assert refused.status == 403 and refused.json()["code"] == "capability_disabled", refused.json()
    activate(call, admin_key, admins["b"], tenant)
    made = withdraw(call, tenant, account, 30 * EUR, iban="FR14 2004 1010 0505 0001 3M02 606")
    assert made.status == 201, made.json()
    txn = made.json()
    assert (txn["status"], txn["type"], txn["capture"]) == ("AUTHORIZED", "withdrawal", "provider")
    assert [s.get("event") for s in txn["lifecycle"]] == [None, "authorized", "submitted"]
    checks = {c.get("check"): c for c in txn["compliance"]["checks"]}
    assert checks["beneficiary"]["iban"] == IBAN and checks["geo"]["country"] == "FR"
    assert checks["beneficiary_screening"]["result"] == "pass" and checks["aml"]["decision"] == "allow"
    provider_ref = next(s for s in txn["lifecycle"] if s.get("event") == "submitted")
    (payout,) = outbox("payout", tenant, txn, ref)
    found = guard(tenant.id, f"provider_ref#{SANDBOX}#{payout.body['data']['id']}")
    assert found is not None and found["owner_id"] == txn["id"] and provider_ref["actor"].startswith("key:")
    assert parts(call, tenant, account) == (100 * EUR, 30 * EUR, 70 * EUR)
    void = call("POST", f"/v1/transactions/{txn['id']}/void", key=tenant.key, headers=idem(), json={})
    assert void.status == 409 and void.json()["code"] == "invalid_state_transition", void.json()

    settled = deliver(call, SANDBOX, payout.body)
    assert settled.status == 200 and settled.json()["transaction_status"] == "SETTLED", settled.json()
    assert parts(call, tenant, account) == (70 * EUR, 0, 70 * EUR)
    clearing = call("GET", "/v1/accounts/sys_payout_clearing_eur", key=tenant.key).json()["balance"]
    assert clearing["posted_minor"] == 30 * EUR
    items = len(txn_items(tenant.id, txn["id"]))
    assert deliver(call, SANDBOX, payout.body).json()["status"] == "duplicate"
    assert len(txn_items(tenant.id, txn["id"])) == items
    assert [s.get("event") for s in transaction(call, tenant, txn["id"])["lifecycle"]] == [
        None,
        "authorized",
        "submitted",
        "captured",
    ]


def test_a_failed_payout_is_reversed_with_the_funds_back(call: Any, admin_key: str, admins: dict[str, str]) -> None:
    tenant = live_tenant(call, admin_key, admins)
    ref, account = funded(call, admin_key, tenant, 100 * EUR, "fail")
    txn = withdraw(call, tenant, account, 40 * EUR).json()
    assert parts(call, tenant, account) == (100 * EUR, 40 * EUR, 60 * EUR)
    (failed,) = outbox("payout", tenant, txn, ref)
    assert failed.body["type"] == "payout.failed"
    answer = deliver(call, SANDBOX, failed.body)
    assert answer.status == 200 and answer.json()["transaction_status"] == "REVERSED", answer.json()
    assert parts(call, tenant, account) == (100 * EUR, 0, 100 * EUR)
    again = deliver(call, SANDBOX, failed.body | {"id": f"sbxevt_{uuid.uuid4().hex}"})  # same outcome, new id
    assert again.json()["status"] == "ignored"
    assert parts(call, tenant, account) == (100 * EUR, 0, 100 * EUR)
    # Nothing posted twice: one hold, one release, zero in total.
    legs = [int(i["leg_amount_minor"]) for i in txn_items(tenant.id, txn["id"]) if "leg_amount_minor" in i]
    assert sorted(legs) == sorted([-40 * EUR, 40 * EUR, 40 * EUR, -40 * EUR]) and sum(legs) == 0


def test_beneficiary_checks_come_first(call: Any, admin_key: str, admins: dict[str, str]) -> None:
    tenant = live_tenant(call, admin_key, admins, "Beneficiaries")
    ref, account = funded(call, admin_key, tenant, 100 * EUR)
    bad = withdraw(call, tenant, account, 10 * EUR, iban="FR1420041010050500013M02607")
    assert bad.status == 422 and bad.json()["code"] == "validation_error", bad.json()
    abroad = withdraw(call, tenant, account, 10 * EUR, iban=DE_IBAN)
    assert abroad.status == 422 and abroad.json()["code"] == "geo_blocked", abroad.json()
    # A real OFAC SDN (and UN) listed name, French national: a confirmed match is refused and audited.
    listed = withdraw(call, tenant, account, 10 * EUR, name="Émilie König")
    assert listed.status == 422 and listed.json()["code"] == "compliance_blocked", listed.json()
    assert any(a["payload"].get("beneficiary") == "Émilie König" for a in audits(tenant.id, "compliance.blocked"))
    assert parts(call, tenant, account) == (100 * EUR, 0, 100 * EUR)  # nothing held by any refusal

    # A possible match: held for a screening case, not sent to the provider until the case releases it.
    held = withdraw(call, tenant, account, 25 * EUR, name="Kevin Jordan Guiavarch")
    assert held.status == 201, held.json()
    txn = held.json()
    assert (txn["status"], txn["capture"], txn["compliance"]["decision"]) == ("AUTHORIZED", "review", "review")
    assert [s.get("event") for s in txn["lifecycle"]] == [None, "authorized"]
    case_id = txn["compliance"]["screening_case_id"]
    case = call("GET", f"/admin/v1/cases/{case_id}", key=admins["officer"]).json()
    assert (case["kind"], case["txn_id"], case["subject_user_id"]) == ("screening_hit", txn["id"], None)
    assert parts(call, tenant, account) == (100 * EUR, 25 * EUR, 75 * EUR)
    decided = call(
        "POST",
        f"/admin/v1/cases/{case_id}/decisions",
        key=admins["officer"],
        headers=idem(),
        json={"outcome": "released", "reason": "another person: date of birth differs"},
    )
    assert decided.status == 200, decided.json()
    sent = transaction(call, tenant, txn["id"])
    assert [s.get("event") for s in sent["lifecycle"]] == [None, "authorized", "submitted"]
    (payout,) = outbox("payout", tenant, txn, ref)
    assert deliver(call, SANDBOX, payout.body).json()["transaction_status"] == "SETTLED"
    assert parts(call, tenant, account) == (75 * EUR, 0, 75 * EUR)


def test_a_payout_that_times_out_keeps_the_hold_and_the_retry_pays_once(
    call: Any, admin_key: str, admins: dict[str, str]
) -> None:
    from moncore.domain.ids import derived_id
    from tests.integration.open_banking_minimal import STATE_DIR, event, payment_id

    tenant = live_tenant(call, admin_key, admins, "Timeouts")
    _, account = funded(call, admin_key, tenant, 100 * EUR, provider=MINIMAL)
    key = str(uuid.uuid4())
    reference = f"{tenant.id}:{derived_id('txn', tenant.id, key)}"
    paid = payment_id("OUT", reference)
    outage = STATE_DIR / f"{paid}.outage"
    outage.touch()
    try:
        down = withdraw(call, tenant, account, 45 * EUR, key=key)
        assert down.status == 503 and down.json()["code"] == "provider_unavailable", down.json()
    finally:
        outage.unlink()
    assert parts(call, tenant, account) == (100 * EUR, 45 * EUR, 55 * EUR)  # the hold stays
    (failed,) = audits(tenant.id, "provider.call_failed")
    assert (failed["payload"]["call"], failed["payload"]["error"]) == ("payout", "TimeoutError")

    retried = withdraw(call, tenant, account, 45 * EUR, key=key)
    assert retried.status == 201, retried.json()
    txn = retried.json()
    assert [s.get("event") for s in txn["lifecycle"]] == [None, "authorized", "submitted"]
    calls = (STATE_DIR / f"{paid}.calls").read_text().splitlines()
    assert len(calls) == 2 and (STATE_DIR / f"{paid}.booked").exists()  # asked twice, one payment (one id)
    assert withdraw(call, tenant, account, 45 * EUR, key=key).headers["idempotency-replayed"] == "true"
    assert len((STATE_DIR / f"{paid}.calls").read_text().splitlines()) == 2
    other = withdraw(call, tenant, account, 46 * EUR, key=key)
    assert other.status == 409 and other.json()["code"] == "idempotency_key_reused", other.json()

    booked = event("OUT", "BOOKED", uid=uuid.uuid4().hex, reference=reference, cents=45 * EUR)
    assert deliver(call, MINIMAL, booked).json()["transaction_status"] == "SETTLED"
    assert parts(call, tenant, account) == (55 * EUR, 0, 55 * EUR)
