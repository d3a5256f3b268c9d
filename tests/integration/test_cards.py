"""Cards over HTTP (docs/providers.md, "Cards"): issuing gated by card_issuing (four-eyes), the card processor's
signed webhooks on /webhooks/sandbox_cards driving authorisations, incremental authorisations, clearings,
reversals and refunds through compliance into the ledger, shadow clearing while card_clearing is not live, and the
sandbox provider's failures, duplicates and late deliveries.

Webhooks are built by the sandbox adapter's own SandboxCardNetwork (its wire format, numbered per authorisation),
laid out by `schedule` (order, duplicates, signature age), signed with the secret read from Secrets Manager (moto)
and POSTed through the local gateway without any API key. Tables are read with plain boto3.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, new_tenant, table_items

pytestmark = pytest.mark.xdist_group("integration")

PROVIDER = "sandbox_cards"
WEBHOOK = f"/webhooks/{PROVIDER}"
SECRET = "sandbox-cards-webhook-secret-for-tests"


# ------------------------------------------------------------------------------------------------ helpers
def ensure_secret() -> str:
    """The sandbox card provider's webhook secret (the template generates only sandbox_kyc's; an operator adds each
    provider's). Put back if another test rewrote the secret document."""
    client = boto3.client("secretsmanager")
    secret_id = os.environ["MONCORE_WEBHOOK_SECRETS"]
    doc = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    if doc.get(PROVIDER) != SECRET:
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(doc | {PROVIDER: SECRET}))
    return SECRET


def post(call: Any, body: bytes, *, signed_at_s: int | None = None, secret: str | None = None) -> Any:
    from moncore.domain.webhooks import signature_header

    header = signature_header(secret or ensure_secret(), int(time.time()) if signed_at_s is None else signed_at_s, body)
    return call("POST", WEBHOOK, headers={"MonCore-Signature": header, "Content-Type": "application/json"}, data=body)


def send(call: Any, event: dict[str, Any]) -> dict[str, Any]:
    answered = post(call, json.dumps(event, sort_keys=True).encode())
    assert answered.status == 200, answered.json()
    return dict(answered.json())


def deliver_all(
    call: Any,
    events: Sequence[dict[str, Any]],
    *,
    order: Sequence[int],
    duplicates: bool,
    secret: str,
    back_to_back: bool = False,
) -> list[Any]:
    """Deliver `events` in `order`; with `duplicates`, each twice: all the first deliveries then every redelivery
    (backwards), or, `back_to_back`, each redelivered right after its first delivery (an event still parked for its
    predecessor is redelivered while it waits)."""
    from moncore.providers.cards import schedule

    deliveries = schedule(events, order=order, duplicates=duplicates and not back_to_back)
    if duplicates and back_to_back:
        deliveries = [delivery for delivery in deliveries for _ in range(2)]
    answers = []
    for delivery in deliveries:
        answered = post(call, delivery.body, signed_at_s=delivery.signed_at_s, secret=secret)
        assert answered.status == 200, answered.json()
        answers.append(answered.json())
    return answers


def change(call: Any, key: str, tenant_id: str, capability: str, mode: str) -> Any:
    body = {"capability": capability, "mode": mode, "contract_ref": f"ISSUER-{capability}"}
    return call("POST", f"/admin/v1/tenants/{tenant_id}/capabilities", key=key, json=body, headers=idem())


def go_live(call: Any, admins: tuple[str, str], tenant_id: str, capability: str) -> None:
    """The four-eyes activation: one admin requests, the other approves."""
    requested = change(call, admins[0], tenant_id, capability, "live")
    assert requested.status == 202, requested.json()
    path = f"/admin/v1/tenants/{tenant_id}/capability-requests/{requested.json()['id']}/approve"
    approved = call("POST", path, key=admins[1], json={})
    assert approved.status == 200, approved.json()


def issue(call: Any, tenant: Tenant, user_id: str, account_id: str, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return call(
        "POST", "/v1/cards", key=tenant.key, json={"user_id": user_id, "account_id": account_id}, headers=headers
    )


def new_user(call: Any, tenant: Tenant, country: str = "FR") -> str:
    made = call(
        "POST",
        "/v1/users",
        key=tenant.key,
        headers=idem(),
        json={"external_ref": uuid.uuid4().hex, "full_name": "Grace Hopper", "country": country},
    )
    assert made.status == 201, made.json()
    return str(made.json()["id"])


def cardholder(call: Any, tenant: Tenant, funded_minor: int) -> tuple[str, dict[str, Any]]:
    """(account id, card view) of a new funded user with a card."""
    user_id = new_user(call, tenant)
    account_id = new_account(call, tenant, user_id)
    if funded_minor:
        fund(call, tenant, account_id, funded_minor)
    made = issue(call, tenant, user_id, account_id)
    assert made.status == 201, made.json()
    return account_id, dict(made.json())


def network(card: dict[str, Any]) -> Any:
    from moncore.providers.cards import SandboxCardNetwork

    return SandboxCardNetwork(card["issuer"]["token"], card["currency"])


def transaction(call: Any, tenant: Tenant, txn_id: str) -> dict[str, Any]:
    got = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key)
    assert got.status == 200, got.json()
    return dict(got.json())


def audits(tenant: Tenant, action: str) -> list[dict[str, Any]]:
    found = [i for i in table_items("MONCORE_AUDIT_TABLE") if i["tenant_id"] == tenant.id and i["action"] == action]
    return [i | {"payload": json.loads(str(i["payload"]))} for i in found]


def cards_table(prefix: str) -> list[dict[str, Any]]:
    """Items of the Cards table under `prefix`, JSON attributes (steps, legs) decoded."""
    found = [i for i in table_items("MONCORE_CARDS_TABLE") if str(i["pk"]).startswith(prefix)]
    return [i | {k: json.loads(str(i[k])) for k in ("steps", "legs") if k in i} for i in found]


@pytest.fixture(scope="module")
def admins(local_backend: Any) -> tuple[str, str]:
    from infra.local_stack import create_admin_key

    return create_admin_key(name="cards-admin-a")[1], create_admin_key(name="cards-admin-b")[1]


@pytest.fixture(scope="module")
def live(call: Any, admin_key: str, admins: tuple[str, str]) -> Tenant:
    """A tenant the issuer onboarded: card_issuing and card_clearing live (four-eyes)."""
    tenant = new_tenant(call, admin_key, "Cards live")
    go_live(call, admins, tenant.id, "card_issuing")
    go_live(call, admins, tenant.id, "card_clearing")
    return tenant


# ------------------------------------------------------------------------------------------------ issuing
def test_card_issuing_is_refused_until_two_admins_activate_it_and_never_stores_a_pan(
    call: Any, admin_key: str, admins: tuple[str, str]
) -> None:
    tenant = new_tenant(call, admin_key, "Cards gated")
    user_id = new_user(call, tenant)
    account_id = new_account(call, tenant, user_id)
    refused = issue(call, tenant, user_id, account_id)
    assert refused.status == 403 and refused.json()["code"] == "capability_disabled", refused.json()
    assert cards_table(f"{tenant.id}#") == []

    requested = change(call, admins[0], tenant.id, "card_issuing", "live")
    assert requested.status == 202, requested.json()
    path = f"/admin/v1/tenants/{tenant.id}/capability-requests/{requested.json()['id']}/approve"
    assert call("POST", path, key=admins[0], json={}).json()["code"] == "four_eyes_required"
    assert issue(call, tenant, user_id, account_id).status == 403  # still pending: one admin is not enough
    assert call("POST", path, key=admins[1], json={}).status == 200

    key = str(uuid.uuid4())
    made = issue(call, tenant, user_id, account_id, key=key)
    assert made.status == 201, made.json()
    card = made.json()
    assert (card["status"], card["user_id"], card["account_id"], card["currency"]) == (
        "active",
        user_id,
        account_id,
        "EUR",
    )
    assert re.fullmatch(r"\d{4}", card["last4"]) and card["issuer"] == {
        "name": PROVIDER,
        "token": card["issuer"]["token"],
        "status": "active",
    }
    again = issue(call, tenant, user_id, account_id, key=key)
    assert again.status == 201 and again.headers["Idempotency-Replayed"] == "true" and again.json() == card
    other = issue(call, tenant, new_user(call, tenant), account_id, key=key)
    assert other.status == 409 and other.json()["code"] == "idempotency_key_reused"
    mismatch = issue(call, tenant, new_user(call, tenant), account_id)
    assert mismatch.status == 422, mismatch.json()  # the account is not that user's
    assert call("GET", f"/v1/cards/{card['id']}", key=tenant.key).json() == card

    stored = cards_table(f"{tenant.id}#")
    assert len(stored) == 1
    assert not any(re.search(r"\d{12,19}", str(value)) for value in stored[0].values())  # no PAN, anywhere
    assert len(audits(tenant, "card.issued")) == 1
    exposure = call("GET", "/v1/tenant/exposure", key=tenant.key).json()
    assert (exposure["cards_issued"], exposure["cards"]) == (1, {"active": 1})
    # Another tenant cannot see it.
    stranger = new_tenant(call, admin_key, "Cards stranger")
    assert call("GET", f"/v1/cards/{card['id']}", key=stranger.key).status == 404


# ------------------------------------------------------------------------------------------------ every order
# Three card lifecycles (amounts in cents) covering every processor event kind: authorisation 10.00 raised by 2.00,
# a partial clearing of 7.00, then either a final clearing of 4.00 (the rest, 1.00, is released) or an
# authorisation reversal of the 5.00 left; and authorisation 10.00, clearings of 6.00 and a final 3.00 (1.00
# released), then a refund of 2.00. (Small amounts: 24 lifecycles a day stay within tier_0's daily limit.)
FINAL_CLEARING = (("authorization", 1_000), ("increment", 200), ("clearing", 700), ("final", 400))
REVERSED_REST = (("authorization", 1_000), ("increment", 200), ("clearing", 700), ("reversal", 500))
REFUNDED = (("authorization", 1_000), ("clearing", 600), ("final", 300), ("refund", 200))


def lifecycle(net: Any, steps: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    auth = net.authorization(steps[0][1])
    events = [auth]
    for kind, amount in steps[1:]:
        if kind == "increment":
            events.append(net.increment(auth, amount))
        elif kind == "clearing":
            events.append(net.clearing(auth, amount))
        elif kind == "final":
            events.append(net.clearing(auth, amount, final=True))
        elif kind == "refund":
            events.append(net.refund(auth, amount))
        else:
            events.append(net.reversal(auth, amount))
    return events


def settled(authorized: int, captured: int, refunded: int = 0) -> dict[str, Any]:
    return {"status": "SETTLED", "authorized_minor": authorized, "captured_minor": captured, "reversed_minor": refunded}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (FINAL_CLEARING, settled(1_200, 1_100)),
        (REVERSED_REST, settled(1_200, 700)),
        (REFUNDED, settled(1_000, 900, 200)),
    ],
    ids=["final-clearing", "reversal", "refund"],
)
def test_every_order_of_a_card_lifecycle_ends_the_same_and_posts_nothing_twice(
    call: Any, live: Tenant, steps: Sequence[tuple[str, int]], expected: dict[str, Any]
) -> None:
    """Every permutation of the lifecycle's events, each delivered twice: in half of the orders the redeliveries
    come after all first deliveries, in the other half right after each first one (while it may still be parked)."""
    orders = list(itertools.permutations(range(len(steps))))
    spent_minor = expected["captured_minor"] - expected["reversed_minor"]
    funded = 1_200 * len(orders)
    account_id, card = cardholder(call, live, funded)
    net, secret = network(card), ensure_secret()
    finals = []
    for count, order in enumerate(orders, start=1):
        events = lifecycle(net, steps)
        back_to_back = count % 2 == 0
        answers = deliver_all(call, events, order=order, duplicates=True, secret=secret, back_to_back=back_to_back)
        if back_to_back:
            firsts, redeliveries = answers[0::2], answers[1::2]
        else:
            firsts, redeliveries = answers[: len(events)], answers[len(events) :]
        assert {a["result"]["status"] for a in redeliveries} == {"duplicate"}, order
        assert not any(a["result"]["outcome"] == "rejected" for a in firsts), (order, firsts)
        by_id = {a["id"]: a for a in firsts}
        assert by_id[events[0]["id"]]["approved"] is True
        txn = transaction(call, live, firsts[0]["result"]["txn_id"])
        assert {k: txn[k] for k in expected} == expected, order
        assert txn["held_minor"] == 0
        assert txn["released_minor"] == expected["authorized_minor"] - expected["captured_minor"], order
        assert len(txn["reversals"]) == (1 if expected["reversed_minor"] else 0), order
        finals.append([(step.get("event"), step.get("amount_minor"), step.get("status")) for step in txn["lifecycle"]])
        got = balance(call, live, account_id)
        left = funded - spent_minor * count
        assert (got["posted_minor"], got["pending_out_minor"], got["available_minor"]) == (left, 0, left), order
    assert all(final == finals[0] for final in finals)  # the same lifecycle, step by step, whatever the order
    legs = [i for i in ledger_items(live.id) if i.get("account_id") == account_id and i.get("phase") == "SETTLED"]
    amounts = [int(i["leg_amount_minor"]) for i in legs]
    # Every clearing posted exactly once, every refund credited exactly once (besides the funding).
    assert -sum(a for a in amounts if a < 0) == expected["captured_minor"] * len(orders)
    assert sum(a for a in amounts if a > 0) == funded + expected["reversed_minor"] * len(orders)


# ------------------------------------------------------------------------------------------------ shadow clearing
def test_card_clearing_in_shadow_records_and_reconciles_but_posts_nothing_then_live_posts(
    call: Any, admin_key: str, admins: tuple[str, str]
) -> None:
    from moncore.ledger.card_clearing import CardClearing
    from moncore.providers.cards import settlement_report

    tenant = new_tenant(call, admin_key, "Cards shadow")
    go_live(call, admins, tenant.id, "card_issuing")
    assert change(call, admins[0], tenant.id, "card_clearing", "shadow").status == 200  # no second admin needed
    account_id, card = cardholder(call, tenant, 10_000)
    net = network(card)
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    auth = net.authorization(5_000)
    events = [auth, net.clearing(auth, 3_000), net.clearing(auth, 2_000, final=True), net.refund(auth, 1_000)]
    answers = [send(call, event) for event in events]
    assert answers[0]["approved"] is True
    assert [a["result"]["outcome"] for a in answers[1:]] == ["recorded", "recorded", "recorded"]
    txn_id = answers[0]["result"]["txn_id"]

    # Nothing posted: the hold stays AUTHORIZED (released by the processor's reversal or the expiry sweep).
    txn = transaction(call, tenant, txn_id)
    assert (txn["status"], txn["held_minor"], txn["captured_minor"], txn["reversals"]) == ("AUTHORIZED", 5_000, 0, [])
    got = balance(call, tenant, account_id)
    assert (got["posted_minor"], got["pending_out_minor"], got["available_minor"]) == (10_000, 5_000, 5_000)
    # ... but computed and recorded as if posted: each against the shadow clearings before it.
    records = sorted(cards_table(f"{tenant.id}#clearing#"), key=lambda r: str(r["sort_key"]))
    assert [(r["kind"], int(r["amount_minor"]), r["mode"], r["posted"]) for r in records] == [
        ("clearing", 3_000, "shadow", False),
        ("clearing", 2_000, "shadow", False),
        ("refund", 1_000, "shadow", False),
    ]
    clearing = f"sys_card_clearing_{card['currency'].lower()}"
    assert [[leg[0], int(leg[1]), leg[2]] for leg in records[0]["legs"]] == [
        [account_id, 3_000, "RELEASED"],
        [clearing, -3_000, "RELEASED"],
        [account_id, -3_000, "SETTLED"],
        [clearing, 3_000, "SETTLED"],
    ]
    assert [s["kind"] for s in records[1]["steps"]] == ["captured"] and records[1]["steps"][0]["status"] == "SETTLED"
    assert [[leg[0], int(leg[1]), leg[2]] for leg in records[2]["legs"]] == [
        [clearing, -1_000, "SETTLED"],
        [account_id, 1_000, "SETTLED"],
    ]
    assert {r["authorization_ref"] for r in records} == {auth["authorization"]["id"]}
    assert len(audits(tenant, "card.clearing_shadowed")) == 3
    assert len(audits(tenant, "capability.shadow_decision")) == 3
    until = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    report = settlement_report(events)
    reconciled = CardClearing().reconcile(tenant.id, PROVIDER, report, since=since, until=until)
    assert len(reconciled["matched"]) == 3 and reconciled["mismatched"] == reconciled["missing_in_kernel"] == []
    wrong = [report[0] | {"amount_minor": 2_999}, {**report[1], "event_id": "sbxevt_unknown"}]
    reconciled = CardClearing().reconcile(tenant.id, PROVIDER, wrong, since=since, until=until)
    assert [len(reconciled[k]) for k in ("matched", "mismatched", "missing_in_kernel", "missing_at_provider")] == [
        0,
        1,
        1,
        2,
    ]

    # A payment authorised while clearing is still in shadow, not cleared yet: its hold waits like any other.
    pending = net.authorization(1_000)
    pending_txn = send(call, pending)["result"]["txn_id"]
    assert balance(call, tenant, account_id)["available_minor"] == 4_000

    # Live after onboarding (four-eyes), no migration: the next clearings post, including the one of the payment
    # authorised in shadow; the shadow-cleared hold is untouched (never posted retroactively).
    go_live(call, admins, tenant.id, "card_clearing")
    cleared = send(call, net.clearing(pending, 1_000, final=True))
    assert (cleared["result"]["outcome"], cleared["result"]["txn_id"]) == ("applied", pending_txn)
    later = net.authorization(2_000)
    approved = send(call, later)
    assert approved["approved"] is True
    assert send(call, net.clearing(later, 2_000, final=True))["result"]["outcome"] == "applied"
    got = balance(call, tenant, account_id)
    assert (got["posted_minor"], got["pending_out_minor"], got["available_minor"]) == (7_000, 5_000, 2_000)
    assert transaction(call, tenant, txn_id)["status"] == "AUTHORIZED"
    settled_in_live = transaction(call, tenant, pending_txn)
    assert (settled_in_live["status"], settled_in_live["captured_minor"]) == ("SETTLED", 1_000)
    live_records = sorted(
        (r for r in cards_table(f"{tenant.id}#clearing#") if r["mode"] == "live"), key=lambda r: str(r["sort_key"])
    )
    assert [(r["txn_id"], r["posted"]) for r in live_records] == [
        (pending_txn, True),
        (approved["result"]["txn_id"], True),
    ]
    assert sorted(int(leg[1]) for leg in live_records[1]["legs"]) == [-2_000, -2_000, 2_000, 2_000]


# ------------------------------------------------------------------------------------------------ refunds
def test_a_refund_credits_the_card_account_back_once(call: Any, live: Tenant) -> None:
    account_id, card = cardholder(call, live, 5_000)
    net = network(card)
    auth = net.authorization(3_000)
    clearing = net.clearing(auth, 3_000, final=True)
    refund = net.refund(auth, 1_000)  # sequences 1, 2, 3: the processor's order
    for event in (auth, clearing, refund):
        assert send(call, event)["result"]["outcome"] == "applied"
    assert send(call, refund)["result"]["status"] == "duplicate"
    got = balance(call, live, account_id)
    assert (got["posted_minor"], got["available_minor"], got["pending_out_minor"]) == (3_000, 3_000, 0)
    txn = transaction(call, live, send(call, auth)["result"]["txn_id"])
    assert (txn["status"], txn["captured_minor"], txn["reversed_minor"]) == ("SETTLED", 3_000, 1_000)
    reversal = transaction(call, live, txn["reversals"][0]["txn_id"])
    assert (reversal["type"], reversal["reference"], reversal["reverses_txn_id"]) == ("reversal", "refund", txn["id"])
    too_much = send(call, net.refund(auth, 2_500))  # only 2,000 is left to refund
    assert (too_much["result"]["outcome"], too_much["result"]["code"]) == ("rejected", "validation_error")
    assert balance(call, live, account_id)["posted_minor"] == 3_000


# ------------------------------------------------------------------------------------------------ declines
def test_declined_authorizations_post_nothing_and_are_answered_and_recorded_as_declines(
    call: Any, admin_key: str, live: Tenant
) -> None:
    account_id, card = cardholder(call, live, 2_000)
    net = network(card)
    declined_before = len(audits(live, "card.authorization_declined"))

    def decline_reason(event: dict[str, Any]) -> str:
        answer = send(call, event)
        assert answer["approved"] is False and answer["result"]["decision"] == "declined", answer
        txn = call("GET", f"/v1/transactions/{answer['result']['txn_id']}", key=live.key)
        assert txn.status == 404  # nothing posted
        return str(answer["decline_reason"])

    assert decline_reason(net.authorization(5_000)) == "insufficient_funds"
    assert decline_reason(net.authorization(150_000)) == "limit_exceeded"  # tier_0: 1,000.00 per transaction
    assert decline_reason(net.authorization(500, merchant_country="KP")) == "geo_blocked"
    assert call("POST", f"/v1/cards/{card['id']}/freeze", key=live.key, json={"reason": "lost"}).status == 200
    frozen = net.authorization(500)
    assert decline_reason(frozen) == "card_not_active"
    again = send(call, frozen)  # the processor retries: the same answer
    assert (again["approved"], again["decline_reason"]) == (False, "card_not_active")
    assert again["result"]["status"] == "duplicate"
    later = send(call, net.clearing(frozen, 500, final=True))  # a clearing of a declined authorisation
    assert (later["result"]["outcome"], later["result"]["code"]) == ("rejected", "not_found")
    assert call("POST", f"/v1/cards/{card['id']}/unfreeze", key=live.key, json={}).status == 200
    frozen_account = call(
        "POST", f"/admin/v1/accounts/{live.id}/{account_id}/freeze", key=admin_key, json={"reason": "review"}
    )
    assert frozen_account.status == 200, frozen_account.json()
    assert decline_reason(net.authorization(500)) == "account_frozen"

    got = balance(call, live, account_id)
    assert (got["posted_minor"], got["pending_out_minor"], got["available_minor"]) == (2_000, 0, 2_000)
    recorded = audits(live, "card.authorization_declined")[declined_before:]
    assert len(recorded) == 5 and all(r["payload"]["posted"] is False for r in recorded)
    assert len(audits(live, "card.event_rejected")) >= 1


# ------------------------------------------------------------------------------------------------ signatures, late
def test_invalid_signatures_and_replays_outside_the_tolerance_are_refused_and_stored(call: Any, live: Tenant) -> None:
    from moncore.providers.cards import schedule

    account_id, card = cardholder(call, live, 1_000)
    auth = network(card).authorization(300)
    body = json.dumps(auth, sort_keys=True).encode()
    forged = post(call, body, secret="not-the-providers-secret")
    assert forged.status == 401 and forged.json()["code"] == "invalid_signature"
    assert forged.json()["errors"][0]["reason"] == "signature_mismatch"
    (stale,) = schedule([auth], signed_ago_s=600)  # a capture of a real delivery, replayed 10 minutes later
    replayed = post(call, stale.body, signed_at_s=stale.signed_at_s)
    assert replayed.status == 401 and replayed.json()["errors"][0]["reason"] == "timestamp_outside_tolerance"
    unsigned = call("POST", WEBHOOK, headers={"Content-Type": "application/json"}, data=body)
    assert unsigned.status == 401 and unsigned.json()["errors"][0]["reason"] == "missing_signature"
    attempts = [
        i
        for i in table_items("MONCORE_WEBHOOK_EVENTS_TABLE")
        if str(i["pk"]).startswith(f"_platform#webhook-rejected#cards#{PROVIDER}#") and i.get("raw_body") == body
    ]
    assert sorted(str(i["reason"]) for i in attempts) == [
        "missing_signature",
        "signature_mismatch",
        "timestamp_outside_tolerance",
    ]
    assert balance(call, live, account_id)["pending_out_minor"] == 0  # none of them acted
    assert send(call, auth)["approved"] is True  # the genuine delivery still applies, once
    assert balance(call, live, account_id)["pending_out_minor"] == 300
    unknown = post(
        call, json.dumps(network({"issuer": {"token": "sbxcard_nobody"}, "currency": "EUR"}).authorization(1)).encode()
    )
    assert unknown.status == 404  # no card has that token: stored UNMATCHED, nothing touched


def test_a_clearing_arriving_after_the_hold_expired_is_rejected_and_posts_nothing(call: Any, live: Tenant) -> None:
    from moncore.ledger.lifecycle import LifecycleService

    account_id, card = cardholder(call, live, 1_000)
    net = network(card)
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    auth = net.authorization(600, expires_at=soon)
    txn_id = send(call, auth)["result"]["txn_id"]
    assert balance(call, live, account_id)["available_minor"] == 400
    time.sleep(1.6)
    assert txn_id in LifecycleService().expire_due_holds(live.id)  # the clearing never came in time
    late = send(call, net.clearing(auth, 600, final=True))
    assert (late["result"]["outcome"], late["result"]["code"]) == ("rejected", "invalid_state_transition")
    txn = transaction(call, live, txn_id)
    assert (txn["status"], txn["captured_minor"], txn["lifecycle"][-1]["event"]) == ("REVERSED", 0, "expired")
    got = balance(call, live, account_id)
    assert (got["posted_minor"], got["available_minor"], got["pending_out_minor"]) == (1_000, 1_000, 0)
    assert [a["payload"]["event_id"] for a in audits(live, "card.event_rejected")][-1] == json.loads(json.dumps(late))[
        "id"
    ]


# ------------------------------------------------------------------------------------------------ provider failures
def test_issuer_failures_mid_flow_leave_nothing_half_done_and_a_retry_completes(call: Any, live: Tenant) -> None:
    from moncore.providers.cards import SandboxCards

    user_id = new_user(call, live)
    account_id = new_account(call, live, user_id)
    fund(call, live, account_id, 1_000)
    SandboxCards.plan_outage(live.id, "issue", calls=1)
    key = str(uuid.uuid4())
    down = issue(call, live, user_id, account_id, key=key)
    assert down.status == 503 and down.json()["code"] == "provider_unavailable"
    cards_before = call("GET", "/v1/tenant/exposure", key=live.key).json()["cards_issued"]
    made = issue(call, live, user_id, account_id, key=key)  # the retry, same key: the same card, once
    assert made.status == 201, made.json()
    card = made.json()
    assert call("GET", "/v1/tenant/exposure", key=live.key).json()["cards_issued"] == cards_before + 1

    SandboxCards.plan_outage(live.id, "freeze", calls=1)
    freeze = call("POST", f"/v1/cards/{card['id']}/freeze", key=live.key, json={"reason": "stolen"})
    assert freeze.status == 503 and freeze.json()["code"] == "provider_unavailable"
    half = call("GET", f"/v1/cards/{card['id']}", key=live.key).json()
    assert (half["status"], half["issuer"]["status"], half["status_reason"]) == ("frozen", "active", "stolen")
    net = network(card)
    assert send(call, net.authorization(100))["decline_reason"] == "card_not_active"  # the kernel froze it at once
    again = call("POST", f"/v1/cards/{card['id']}/freeze", key=live.key, json={"reason": "stolen"})
    assert again.status == 200 and again.json()["issuer"]["status"] == "frozen"  # asking again finishes it
    assert len(audits(live, "card.frozen")) >= 1
    assert call("POST", f"/v1/cards/{card['id']}/unfreeze", key=live.key, json={}).json()["status"] == "active"
    assert send(call, net.authorization(100))["approved"] is True
    closed = call("POST", f"/v1/cards/{card['id']}/close", key=live.key, json={"reason": "customer request"})
    assert closed.status == 200 and closed.json()["status"] == "closed"
    reopen = call("POST", f"/v1/cards/{card['id']}/unfreeze", key=live.key, json={})
    assert reopen.status == 409 and reopen.json()["code"] == "invalid_state_transition"
    assert send(call, net.authorization(100))["decline_reason"] == "card_not_active"
    assert balance(call, live, account_id)["pending_out_minor"] == 100
