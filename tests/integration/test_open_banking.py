"""Open banking fundings over HTTP (docs/providers.md): CREATED when the provider accepts the collection, AUTHORIZED
(pending_in) and SETTLED (posted) by signed webhooks, failed -> REVERSED with nothing ever credited; duplicated,
reordered and late webhooks, invalid signatures, a provider outage, the operator's replay, and a second adapter that
lives only in the tests (tests/integration/open_banking_minimal.py) driving a funding with no kernel change.

Webhook bodies come from the sandbox adapter's own outbox (or the minimal adapter's `event`), signed here with the
provider's secret from Secrets Manager and POSTed through the local gateway without an API key.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.helpers import Tenant, balance, idem, new_tenant
from tests.integration.open_banking_helpers import (
    MINIMAL,
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
    use_provider,
)

pytestmark = pytest.mark.xdist_group("integration")

EUR = 100


def funding(call: Any, tenant: Tenant, account: str, amount_minor: int, key: str | None = None) -> Any:
    body = {"account_id": account, "amount_minor": amount_minor, "currency": "EUR"}
    return call(
        "POST", "/v1/fundings", key=tenant.key, headers={"Idempotency-Key": key or str(uuid.uuid4())}, json=body
    )


def parts(call: Any, tenant: Tenant, account: str) -> tuple[int, int, int]:
    got = balance(call, tenant, account)
    return got["posted_minor"], got["pending_in_minor"], got["available_minor"]


@pytest.fixture(scope="module")
def operator(local_backend: Any) -> str:
    from infra.local_stack import create_admin_key

    return create_admin_key(name="ob-operator", role="operator")[1]


def test_a_funding_is_created_then_authorized_then_settled_by_signed_webhooks(call: Any, admin_key: str) -> None:
    tenant = async_tenant(call, admin_key)
    _, ref, account = holder(call, tenant)
    made = funding(call, tenant, account, 250 * EUR)
    assert made.status == 201, made.json()
    txn = made.json()
    assert (txn["status"], txn["legs"], txn["capture"], txn["account_id"]) == ("CREATED", [], "provider", account)
    assert txn["provider"]["name"] == SANDBOX and txn["provider"]["reference"].startswith("sbxobc_")
    # The provider reference is guarded (one transaction per reference) where reconciliation finds it.
    found = guard(tenant.id, f"provider_ref#{SANDBOX}#{txn['provider']['reference']}")
    assert found is not None and found["owner_id"] == txn["id"]
    assert parts(call, tenant, account) == (0, 0, 0)

    authorized, settled = outbox("collection", tenant, txn, ref)
    answer = deliver(call, SANDBOX, authorized.body, correlation_id="ob-corr-auth")
    assert answer.status == 200, answer.json()
    assert (answer.json()["status"], answer.json()["transaction_status"]) == ("processed", "AUTHORIZED")
    assert parts(call, tenant, account) == (0, 250 * EUR, 0)  # pending_in: not spendable yet
    # The partner can neither capture nor void a hold that waits for its provider.
    for action in ("capture", "void"):
        refused = call("POST", f"/v1/transactions/{txn['id']}/{action}", key=tenant.key, headers=idem(), json={})
        assert refused.status == 409 and refused.json()["code"] == "invalid_state_transition", refused.json()

    answer = deliver(call, SANDBOX, settled.body, correlation_id="ob-corr-settle")
    assert answer.status == 200 and answer.json()["transaction_status"] == "SETTLED", answer.json()
    assert parts(call, tenant, account) == (250 * EUR, 0, 250 * EUR)
    final = transaction(call, tenant, txn["id"])
    assert [(s.get("event"), s["status"]) for s in final["lifecycle"]] == [
        (None, "CREATED"),
        ("authorized", "AUTHORIZED"),
        ("captured", "SETTLED"),
    ]
    assert [s["actor"] for s in final["lifecycle"][1:]] == [f"provider:{SANDBOX}"] * 2
    assert [s["correlation_id"] for s in final["lifecycle"][1:]] == ["ob-corr-auth", "ob-corr-settle"]
    captured = audits(tenant.id, "funding.captured")
    assert [(a["subject_id"], a["correlation_id"]) for a in captured] == [(txn["id"], "ob-corr-settle")]
    assert {i["status"] for i in inbox_items(SANDBOX) if i.get("subject_id") == txn["id"]} == {"PROCESSED"}

    # Duplicates: the same delivery again, and the same outcome under another event id, change nothing.
    before = len(txn_items(tenant.id, txn["id"]))
    again = deliver(call, SANDBOX, settled.body)
    assert again.status == 200 and again.json()["status"] == "duplicate", again.json()
    other_id = settled.body | {"id": f"sbxevt_{uuid.uuid4().hex}"}
    twin = deliver(call, SANDBOX, other_id)
    assert twin.status == 200 and twin.json()["status"] == "ignored", twin.json()
    assert len(txn_items(tenant.id, txn["id"])) == before
    assert parts(call, tenant, account) == (250 * EUR, 0, 250 * EUR)
    # The same Idempotency-Key replays the funding; the provider is asked again and answers the same reference.
    same = funding(call, tenant, account, 250 * EUR)
    assert same.status == 201 and same.json()["id"] != txn["id"]  # (a new key: a new funding)


def test_a_failed_collection_is_reversed_and_never_credited(call: Any, admin_key: str) -> None:
    tenant = async_tenant(call, admin_key)
    _, ref, account = holder(call, tenant, "fail")
    txn = funding(call, tenant, account, 80 * EUR).json()
    authorized, failed = outbox("collection", tenant, txn, ref)
    assert deliver(call, SANDBOX, authorized.body).json()["transaction_status"] == "AUTHORIZED"
    assert parts(call, tenant, account) == (0, 80 * EUR, 0)
    answer = deliver(call, SANDBOX, failed.body)
    assert answer.status == 200 and answer.json()["transaction_status"] == "REVERSED", answer.json()
    assert parts(call, tenant, account) == (0, 0, 0)
    # A failure that overtakes the authorization: CREATED -> REVERSED with no leg at all.
    txn2 = funding(call, tenant, account, 30 * EUR).json()
    authorized2, failed2 = outbox("collection", tenant, txn2, ref)
    assert deliver(call, SANDBOX, failed2.body).json()["transaction_status"] == "REVERSED"
    late = deliver(call, SANDBOX, authorized2.body)
    assert late.status == 200 and late.json()["status"] == "ignored" and "REVERSED" in late.json()["reason"]
    assert transaction(call, tenant, txn2["id"])["legs"] == []
    assert parts(call, tenant, account) == (0, 0, 0)
    legs = [i for i in txn_items(tenant.id, txn["id"]) if i.get("account_id") == account and "leg_amount_minor" in i]
    assert len(legs) == 2 and sum(int(i["leg_amount_minor"]) for i in legs) == 0  # the hold and its release


def test_reordered_and_duplicated_webhooks_converge(call: Any, admin_key: str) -> None:
    tenant = async_tenant(call, admin_key)
    _, ref, account = holder(call, tenant, "reorder")
    txn = funding(call, tenant, account, 40 * EUR).json()
    settled, authorized = outbox("collection", tenant, txn, ref)  # the sandbox sends settled first
    assert settled.body["type"] == "collection.settled"
    assert deliver(call, SANDBOX, settled.body).json()["transaction_status"] == "SETTLED"  # CREATED -> SETTLED
    late = deliver(call, SANDBOX, authorized.body)
    assert late.json()["status"] == "ignored" and "SETTLED" in late.json()["reason"], late.json()
    assert parts(call, tenant, account) == (40 * EUR, 0, 40 * EUR)
    # The duplicate scenario: every webhook twice; the second of each is a duplicate.
    _, ref2, account2 = holder(call, tenant, "duplicate")
    txn2 = funding(call, tenant, account2, 15 * EUR).json()
    answers = [deliver(call, SANDBOX, sent.body).json()["status"] for sent in outbox("collection", tenant, txn2, ref2)]
    assert answers == ["processed", "duplicate", "processed", "duplicate"]
    assert parts(call, tenant, account2) == (15 * EUR, 0, 15 * EUR)
    assert [s.get("event") for s in transaction(call, tenant, txn2["id"])["lifecycle"]] == [
        None,
        "authorized",
        "captured",
    ]


def test_invalid_signatures_and_late_deliveries_are_refused_stored_and_replayable_by_an_operator(
    call: Any, admin_key: str, operator: str
) -> None:
    from infra.local_stack import create_admin_key

    tenant = async_tenant(call, admin_key)
    _, ref, account = holder(call, tenant, "late")
    txn = funding(call, tenant, account, 60 * EUR).json()
    authorized, settled = outbox("collection", tenant, txn, ref)
    assert authorized.signed_ago_s == 600  # the sandbox's late scenario signs 10 minutes ago
    forged = deliver(call, SANDBOX, authorized.body, secret="not-the-provider-secret")
    assert forged.status == 401 and forged.json()["errors"][0]["reason"] == "signature_mismatch", forged.json()
    late = deliver(call, SANDBOX, authorized.body, signed_ago_s=authorized.signed_ago_s)
    assert late.status == 401 and late.json()["errors"][0]["reason"] == "timestamp_outside_tolerance"
    assert parts(call, tenant, account) == (0, 0, 0)  # nothing acted on either

    listed = call("GET", "/admin/v1/webhook-events", key=operator, query={"provider": SANDBOX, "status": "REJECTED"})
    assert listed.status == 200, listed.json()
    mine = {
        i["reason"]: i
        for i in listed.json()["items"]
        if i["event_id"] is None and i["received_at"] >= txn["created_at"]
    }
    assert {"signature_mismatch", "timestamp_outside_tolerance"} <= set(mine)
    # A forged delivery can never be made valid; a late one can, by an operator (the HMAC is still verified).
    refused = call("POST", f"/admin/v1/webhook-events/{mine['signature_mismatch']['event_key']}/replay", key=operator)
    assert refused.status == 409 and refused.json()["code"] == "invalid_state_transition", refused.json()
    _, viewer = create_admin_key(name="ob-viewer", role="viewer")
    key = mine["timestamp_outside_tolerance"]["event_key"]
    assert call("POST", f"/admin/v1/webhook-events/{key}/replay", key=viewer).status == 403
    replayed = call(
        "POST", f"/admin/v1/webhook-events/{key}/replay", key=operator, headers={"X-Correlation-Id": "rp-1"}
    )
    assert replayed.status == 200, replayed.json()
    assert (replayed.json()["http_status"], replayed.json()["answer"]["status"]) == (200, "processed")
    assert parts(call, tenant, account) == (0, 60 * EUR, 0)
    # Replaying again changes nothing: the event is a duplicate now.
    before = len(txn_items(tenant.id, txn["id"]))
    again = call("POST", f"/admin/v1/webhook-events/{key}/replay", key=operator)
    assert again.status == 200 and again.json()["answer"]["status"] == "duplicate", again.json()
    assert len(txn_items(tenant.id, txn["id"])) == before
    replays = audits(tenant.id, "webhook_event.replayed")
    assert [a["correlation_id"] for a in replays][:1] == ["rp-1"] and len(replays) == 2
    assert replays[0]["actor"].startswith("key:")
    # The provider's own redelivery of the settlement, on time, completes the funding.
    assert deliver(call, SANDBOX, settled.body).json()["transaction_status"] == "SETTLED"
    assert parts(call, tenant, account) == (60 * EUR, 0, 60 * EUR)


def test_an_accepted_event_is_replayed_from_the_inbox_after_the_ledger_refused_it(
    call: Any, admin_key: str, operator: str
) -> None:
    """The account was frozen when the settlement arrived: the event stays RECEIVED (422, audited); once the
    account is unfrozen, the operator replays the stored event and the money is credited once."""
    tenant = async_tenant(call, admin_key)
    _, ref, account = holder(call, tenant)
    txn = funding(call, tenant, account, 20 * EUR).json()
    _, settled = outbox("collection", tenant, txn, ref)
    path = f"/admin/v1/accounts/{tenant.id}/{account}"
    assert call("POST", f"{path}/freeze", key=admin_key, json={"reason": "check"}).status == 200
    refused = deliver(call, SANDBOX, settled.body)
    assert refused.status == 422 and refused.json()["code"] == "account_frozen", refused.json()
    (stored,) = [i for i in inbox_items(SANDBOX) if i.get("event_id") == settled.body["id"]]
    assert stored["status"] == "RECEIVED" and len(audits(tenant.id, "provider_event.refused")) == 1
    assert call("POST", f"{path}/unfreeze", key=admin_key, json={"reason": "ok"}).status == 200
    listed = call("GET", "/admin/v1/webhook-events", key=operator, query={"provider": SANDBOX, "status": "RECEIVED"})
    (item,) = [i for i in listed.json()["items"] if i["event_id"] == settled.body["id"]]
    replayed = call("POST", f"/admin/v1/webhook-events/{item['event_key']}/replay", key=operator)
    assert replayed.json()["status_after"] == "PROCESSED", replayed.json()
    assert parts(call, tenant, account) == (20 * EUR, 0, 20 * EUR)


def test_a_provider_outage_posts_nothing_and_is_audited(call: Any, admin_key: str) -> None:
    tenant = async_tenant(call, admin_key)
    _, _, account = holder(call, tenant, "unavailable")
    key = str(uuid.uuid4())
    for _ in range(2):  # retryable: the key is released, the retry asks the provider again
        down = funding(call, tenant, account, 10 * EUR, key=key)
        assert down.status == 503 and down.json()["code"] == "provider_unavailable", down.json()
    assert call("GET", f"/v1/accounts/{account}/entries", key=tenant.key).json()["items"] == []
    failed = audits(tenant.id, "provider.call_failed")
    assert len(failed) == 2 and failed[0]["payload"]["call"] == "collect"


def test_a_funding_under_aml_review_is_held_only_once_settled_and_credited_by_the_case(
    call: Any, admin_key: str
) -> None:
    from infra.local_stack import create_admin_key

    officer = create_admin_key(name="ob-officer", role="compliance_officer")[1]
    limits = {"EUR": {k: 500_000 * EUR for k in ("per_transaction_minor", "daily_minor", "monthly_minor")}}
    limits["EUR"]["balance_cap_minor"] = 500_000 * EUR
    tenant = async_tenant(call, admin_key, "OB review", tier_limits={"tier_0": limits})
    _, ref, account = holder(call, tenant)
    txn = funding(call, tenant, account, 12_000 * EUR).json()  # first_large_funding: review
    assert (txn["status"], txn["capture"], txn["compliance"]["decision"]) == ("CREATED", "review", "review")
    authorized, settled = outbox("collection", tenant, txn, ref)
    noted = deliver(call, SANDBOX, authorized.body).json()
    assert noted["status"] == "ignored" and noted["transaction_status"] == "CREATED"  # never held before settled
    case_id = txn["compliance"]["case_id"]
    early = call(
        "POST",
        f"/admin/v1/cases/{case_id}/decisions",
        key=officer,
        headers=idem(),
        json={"outcome": "released", "reason": "documented"},
    )
    assert early.status == 409, early.json()  # nothing to release before the provider settled
    assert deliver(call, SANDBOX, settled.body).json()["transaction_status"] == "AUTHORIZED"
    assert parts(call, tenant, account) == (0, 12_000 * EUR, 0)
    decided = call(
        "POST",
        f"/admin/v1/cases/{case_id}/decisions",
        key=officer,
        headers=idem(),
        json={"outcome": "released", "reason": "documented"},
    )
    assert decided.status == 200, decided.json()
    assert parts(call, tenant, account) == (12_000 * EUR, 0, 12_000 * EUR)


def test_a_second_adapter_from_the_tests_drives_a_funding_with_no_kernel_change(call: Any, admin_key: str) -> None:
    from tests.integration.open_banking_minimal import event

    tenant = new_tenant(call, admin_key, "Minimal bank")
    unknown = call(
        "PATCH", f"/admin/v1/tenants/{tenant.id}/config", key=admin_key, json={"open_banking_provider": "nobank"}
    )
    assert unknown.status == 422, unknown.json()
    use_provider(call, admin_key, tenant, MINIMAL)
    _, _, account = holder(call, tenant)
    txn = funding(call, tenant, account, 33 * EUR).json()
    assert (txn["status"], txn["provider"]["name"]) == ("CREATED", MINIMAL)
    reference = f"{tenant.id}:{txn['id']}"
    booked = event("IN", "BOOKED", uid=uuid.uuid4().hex, reference=reference, cents=33 * EUR)
    auth = event("IN", "AUTH", uid=uuid.uuid4().hex, reference=reference, cents=33 * EUR)
    assert deliver(call, MINIMAL, auth).json()["transaction_status"] == "AUTHORIZED"
    assert deliver(call, MINIMAL, booked).json()["transaction_status"] == "SETTLED"
    assert parts(call, tenant, account) == (33 * EUR, 0, 33 * EUR)
    # Its events are its own: the sandbox's route does not accept them, and a foreign reference matches nothing.
    assert deliver(call, SANDBOX, booked).status == 422
    stray = event("IN", "BOOKED", uid=uuid.uuid4().hex, reference=f"{tenant.id}:txn_nope", cents=33 * EUR)
    assert deliver(call, MINIMAL, stray).status == 404
