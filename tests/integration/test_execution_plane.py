"""The execution plane as a whole (docs/providers.md): every provider call and callback is idempotent, carries the
correlation id, writes an audit event and leaves a provider reference reconciliation can match (one open banking
funding, one withdrawal, one card clearing, end to end over HTTP); every port's adapter is tenant configuration
(a second screening adapter from the tests swaps in with no kernel change); the published OpenAPI lists the
execution plane's routes.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.integration.helpers import Tenant, idem, new_tenant, table_items
from tests.integration.open_banking_helpers import (
    SANDBOX,
    async_tenant,
    audits,
    deliver,
    guard,
    holder,
    inbox_items,
    outbox,
    transaction,
    txn_items,
)

pytestmark = pytest.mark.xdist_group("integration")

CARDS = "sandbox_cards"
IBAN = "FR1420041010050500013M02606"


@pytest.fixture(scope="module")
def second_admin(local_backend: Any) -> str:
    from infra.local_stack import create_admin_key

    return create_admin_key(name="execution-plane-admin-b")[1]


def go_live(call: Any, admin_key: str, second_admin: str, tenant: Tenant, capability: str) -> None:
    """Issuer onboarding: one admin asks with the contract reference, another approves."""
    body = {"capability": capability, "mode": "live", "contract_ref": f"ISSUER-{capability}"}
    asked = call("POST", f"/admin/v1/tenants/{tenant.id}/capabilities", key=admin_key, json=body, headers=idem())
    assert asked.status == 202, asked.json()
    path = f"/admin/v1/tenants/{tenant.id}/capability-requests/{asked.json()['id']}/approve"
    assert call("POST", path, key=second_admin, json={}).status == 200


def post(call: Any, tenant: Tenant, path: str, body: dict[str, Any], correlation_id: str, key: str) -> Any:
    headers = {"Idempotency-Key": key, "X-Correlation-Id": correlation_id}
    answered = call("POST", path, key=tenant.key, headers=headers, json=body)
    assert answered.headers["x-correlation-id"] == correlation_id
    return answered


def correlations(tenant_id: str, action: str, subject_id: str) -> list[str]:
    return [a["correlation_id"] for a in audits(tenant_id, action) if a["subject_id"] == subject_id]


def trail(tenant_id: str, action: str, subject_id: str) -> list[tuple[str, str | None]]:
    """(correlation id, provider reference) of each audit event of `action` about `subject_id`."""
    found = [a for a in audits(tenant_id, action) if a["subject_id"] == subject_id]
    return [(a["correlation_id"], a["payload"].get("provider_ref")) for a in found]


def settled_legs(tenant_id: str, txn_id: str) -> list[dict[str, Any]]:
    return [i for i in txn_items(tenant_id, txn_id) if "leg_amount_minor" in i and i["phase"] == "SETTLED"]


def test_every_provider_call_and_callback_is_idempotent_audited_with_its_correlation_id_and_reconcilable(
    call: Any, admin_key: str, second_admin: str
) -> None:
    from moncore.domain.webhooks import signature_header
    from moncore.providers.cards import SandboxCardNetwork
    from tests.integration.open_banking_helpers import provider_secret

    run = uuid.uuid4().hex[:8]
    # ---- an open banking funding: the request, then the provider's two webhooks, each with its correlation id
    tenant = async_tenant(call, admin_key, "Requirement 8")
    user_id, ref, account = holder(call, tenant)
    key = str(uuid.uuid4())
    body = {"account_id": account, "amount_minor": 5_000, "currency": "EUR"}
    funding = post(call, tenant, "/v1/fundings", body, f"fund-{run}", key)
    assert funding.status == 201, funding.json()
    txn = funding.json()
    replay = post(call, tenant, "/v1/fundings", body, f"fund-retry-{run}", key)  # idempotent: the same funding
    assert replay.json()["id"] == txn["id"] and replay.headers["idempotency-replayed"] == "true"
    authorized, settled = outbox("collection", tenant, txn, ref)
    for sent, corr in ((authorized, f"fund-auth-{run}"), (settled, f"fund-settle-{run}")):
        assert deliver(call, SANDBOX, sent.body, correlation_id=corr).json()["status"] == "processed"
    assert deliver(call, SANDBOX, settled.body, correlation_id=f"dup-{run}").json()["status"] == "duplicate"
    reference = transaction(call, tenant, txn["id"])["provider"]["reference"]
    assert reference == settled.body["data"]["id"]
    assert correlations(tenant.id, "funding.created", txn["id"]) == [f"fund-{run}"]
    assert correlations(tenant.id, "funding.authorized", txn["id"]) == [f"fund-auth-{run}"]
    assert trail(tenant.id, "funding.captured", txn["id"]) == [(f"fund-settle-{run}", reference)]
    legs = [i for i in txn_items(tenant.id, txn["id"]) if "leg_amount_minor" in i]
    assert len(legs) == 6 and {(i["provider"], i["provider_ref"]) for i in legs} == {(SANDBOX, reference)}
    assert guard(tenant.id, f"provider_ref#{SANDBOX}#{reference}")["owner_id"] == txn["id"]
    stored = {i["event_id"]: i for i in inbox_items(SANDBOX) if i.get("subject_id") == txn["id"]}
    assert stored[settled.body["id"]]["correlation_id"] == f"fund-settle-{run}"  # the first delivery's, kept

    # ---- a withdrawal of that money, once the issuer onboarded the tenant
    go_live(call, admin_key, second_admin, tenant, "withdrawals")
    key = str(uuid.uuid4())
    beneficiary = {"name": "Jean Dupont", "iban": IBAN}
    body = {"account_id": account, "amount_minor": 2_000, "currency": "EUR", "beneficiary": beneficiary}
    made = post(call, tenant, "/v1/withdrawals", body, f"wd-{run}", key)
    assert made.status == 201, made.json()
    wd = made.json()
    again = post(call, tenant, "/v1/withdrawals", body, f"wd-retry-{run}", key)
    assert again.json()["id"] == wd["id"] and again.headers["idempotency-replayed"] == "true"
    (payout,) = outbox("payout", tenant, wd, ref)
    payout_ref = payout.body["data"]["id"]
    assert wd["provider"] == {"name": SANDBOX, "reference": payout_ref}  # the submission's, on the transaction
    assert deliver(call, SANDBOX, payout.body, correlation_id=f"wd-settle-{run}").json()["transaction_status"] == (
        "SETTLED"
    )
    assert correlations(tenant.id, "withdrawal.authorized", wd["id"]) == [f"wd-{run}"]
    assert trail(tenant.id, "withdrawal.submitted", wd["id"]) == [(f"wd-{run}", payout_ref)]
    assert trail(tenant.id, "withdrawal.captured", wd["id"]) == [(f"wd-settle-{run}", payout_ref)]
    legs = settled_legs(tenant.id, wd["id"])  # what reconciliation matches with the bank's statement
    assert len(legs) == 2 and {(i["provider"], i["provider_ref"]) for i in legs} == {(SANDBOX, payout_ref)}
    assert guard(tenant.id, f"provider_ref#{SANDBOX}#{payout_ref}")["owner_id"] == wd["id"]

    # ---- a card payment cleared: the card issued on request, the processor's webhooks each with its own id
    go_live(call, admin_key, second_admin, tenant, "card_issuing")
    go_live(call, admin_key, second_admin, tenant, "card_clearing")
    body = {"user_id": user_id, "account_id": account}
    issued = post(call, tenant, "/v1/cards", body, f"card-{run}", str(uuid.uuid4()))
    assert issued.status == 201, issued.json()
    card = issued.json()
    assert correlations(tenant.id, "card.issued", card["id"]) == [f"card-{run}"]
    net = SandboxCardNetwork(card["issuer"]["token"], "EUR")
    auth = net.authorization(1_200)
    clearing = net.clearing(auth, 1_200, final=True)

    def signed(event: dict[str, Any], corr: str) -> Any:
        raw = json.dumps(event).encode()
        header = signature_header(provider_secret(CARDS), int(time.time()), raw)
        headers = {"MonCore-Signature": header, "Content-Type": "application/json", "X-Correlation-Id": corr}
        answered = call("POST", f"/webhooks/{CARDS}", headers=headers, data=raw)
        assert answered.status == 200, answered.json()
        return answered.json()

    # The clearing first: it waits (parked) for its authorisation and then posts under its own correlation id.
    assert signed(clearing, f"clear-{run}")["result"]["outcome"] == "parked"
    approved = signed(auth, f"auth-{run}")
    assert approved["approved"] is True
    assert signed(clearing, f"clear-dup-{run}")["result"]["status"] == "duplicate"
    card_txn = transaction(call, tenant, approved["result"]["txn_id"])
    auth_ref = auth["authorization"]["id"]
    assert (card_txn["status"], card_txn["captured_minor"]) == ("SETTLED", 1_200)
    assert card_txn["provider"] == {"name": CARDS, "reference": auth_ref}
    assert correlations(tenant.id, "card.authorized", card_txn["id"]) == [f"auth-{run}"]
    assert trail(tenant.id, "card.captured", card_txn["id"]) == [(f"clear-{run}", auth_ref)]
    assert [s["correlation_id"] for s in card_txn["lifecycle"][1:]] == [f"auth-{run}", f"clear-{run}"]
    legs = settled_legs(tenant.id, card_txn["id"])
    assert len(legs) == 2 and {(i["provider"], i["provider_ref"]) for i in legs} == {(CARDS, auth_ref)}
    (record,) = [
        i
        for i in table_items("MONCORE_CARDS_TABLE")
        if str(i["pk"]).startswith(f"{tenant.id}#clearing#") and i.get("event_id") == clearing["id"]
    ]
    assert (record["mode"], record["posted"], record["posted_txn_id"]) == ("live", True, card_txn["id"])
    assert (record["authorization_ref"], record["correlation_id"]) == (auth_ref, f"clear-{run}")
    assert sorted(int(leg[1]) for leg in json.loads(str(record["legs"]))) == [-1_200, -1_200, 1_200, 1_200]


def test_each_port_is_tenant_configuration_and_a_second_screening_adapter_needs_no_kernel_change(
    call: Any, admin_key: str
) -> None:
    from tests.integration.screening_minimal import LISTED, NAME

    def tenant_with(**providers: str) -> Any:
        body = {"name": "Configured", "jurisdictions": ["FR"], **providers}
        return call("POST", "/admin/v1/tenants", key=admin_key, json=body, headers=idem())

    for setting in ("fx_provider", "kyc_provider", "screening_provider", "card_issuer", "card_processor"):
        refused = tenant_with(**{setting: "no_such_adapter"})
        assert refused.status == 422 and refused.json()["errors"][0]["loc"] == ["body", setting], refused.json()
    made = tenant_with(screening_provider=NAME, fx_provider="sandbox_fx", kyc_provider="sandbox_kyc")
    assert made.status == 201, made.json()
    assert {k: made.json()[k] for k in ("screening_provider", "card_issuer", "card_processor")} == {
        "screening_provider": NAME,
        "card_issuer": CARDS,
        "card_processor": CARDS,
    }
    issued = call("POST", f"/admin/v1/tenants/{made.json()['id']}/api-keys", key=admin_key, json={}, headers=idem())
    tenant = Tenant(made.json()["id"], issued.json()["api_key"], issued.json()["key_id"])

    def screen(name: str, **extra: str) -> list[dict[str, Any]]:
        checked = call("POST", "/v1/screening/checks", key=tenant.key, json={"name": name, **extra})
        assert checked.status == 200, checked.json()
        return list(checked.json()["matches"])

    maduro = {"country": "VE", "date_of_birth": "1962-11-23"}
    assert [(m["list"], m["entry_id"]) for m in screen(LISTED)] == [("minimal_watch", "MW-1")]
    assert screen("Nicolas Maduro Moros", **maduro) == []  # on OFAC's list, not on this provider's
    user = {"external_ref": uuid.uuid4().hex, "full_name": LISTED, "country": "FR"}
    blocked = call("POST", "/v1/users", key=tenant.key, headers=idem(), json=user)
    assert blocked.status == 422 and blocked.json()["code"] == "compliance_blocked", blocked.json()

    path = f"/admin/v1/tenants/{tenant.id}/config"
    assert call("PATCH", path, key=admin_key, json={"screening_provider": "nope"}).status == 422
    assert call("PATCH", path, key=admin_key, json={"card_processor": "sandbox_cards"}).status == 422  # creation only
    changed = call("PATCH", path, key=admin_key, json={"screening_provider": "moncore_lists"})
    assert changed.status == 200 and changed.json()["changed"] == ["screening_provider"], changed.json()
    assert any(m["list"] == "ofac_sdn" for m in screen("Nicolas Maduro Moros", **maduro))
    checked = audits(tenant.id, "screening.checked")
    assert [a["payload"]["provider"] for a in checked][-1] == "moncore_lists"
    assert {a["payload"]["provider"] for a in checked} == {NAME, "moncore_lists"}
    other = new_tenant(call, admin_key, "Default screening")
    assert call("GET", f"/admin/v1/tenants/{other.id}", key=admin_key).json()["screening_provider"] == "moncore_lists"


def test_the_published_openapi_lists_the_execution_plane_routes(call: Any) -> None:
    spec = call("GET", "/v1/openapi.json")
    assert spec.status == 200
    paths = spec.json()["paths"]
    expected = {
        "/v1/fundings": {"post"},
        "/v1/withdrawals": {"post"},
        "/v1/cards": {"post"},
        "/v1/cards/{card_id}": {"get"},
        "/v1/cards/{card_id}/freeze": {"post"},
        "/v1/cards/{card_id}/unfreeze": {"post"},
        "/v1/cards/{card_id}/close": {"post"},
        "/v1/qr-payments": {"post"},
        "/v1/qr-payments/pay": {"post"},
        "/v1/qr-payments/{qr_payment_id}": {"get"},
        "/v1/fx/quotes": {"post"},
        "/v1/fx/quotes/{quote_id}": {"get"},
        "/v1/fx/conversions": {"post"},
    }
    assert {path: set(paths.get(path, {})) >= methods for path, methods in expected.items()} == dict.fromkeys(
        expected, True
    )
    withdrawal = paths["/v1/withdrawals"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert withdrawal  # a typed body, not an untyped dict
