"""Invariant 9: duplicated or reordered provider events converge to the same final state and balances.

Every permutation of two card-like sequences is delivered (then delivered again, backwards): the transaction's status,
amounts, lifecycle and the card account's balance must end the same whatever the order, with nothing left parked.
"""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any

import boto3
import pytest

from tests.integration.helpers import Tenant, balance, fund, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")

# (kind, amount_minor): auth 100.00, two partial captures, and a partial authorisation reversal of the rest.
CAPTURES_AND_RELEASE = [("authorization", 10_000), ("capture", 6_000), ("capture", 2_500), ("reversal", 1_500)]
# auth 50.00 captured whole, then a partial refund (a linked reversing transaction).
CAPTURE_AND_REFUND = [("authorization", 5_000), ("capture", 5_000), ("refund", 2_000)]


@pytest.fixture(scope="module")
def card_tenant(call: Any, admin_key: str) -> Tenant:
    tenant = new_tenant(call, admin_key, "Cards")
    # Card authorisations are gated by the issuer-gated capability card_issuing and clearings (captures, refunds) by
    # card_clearing (both disabled until onboarding; shadow clearings post nothing, see test_cards.py for the admin
    # flow): the test switches both on in the tenant record.
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_TENANTS_TABLE"])
    table.update_item(
        Key={"pk": tenant.id},
        UpdateExpression="SET capabilities.card_issuing = :live, capabilities.card_clearing = :live",
        ExpressionAttributeValues={":live": "live"},
    )
    return tenant


def deliver(tenant: Tenant, account_id: str, auth_ref: str, events: list[tuple[int, str, int]]) -> list[str]:
    from moncore.ledger.provider_events import CardEvent, CardEventKind, ProviderEventService

    service = ProviderEventService()
    outcomes = []
    for index, kind, amount_minor in events:
        event = CardEvent(
            provider="sandbox_cards",
            event_id=f"{auth_ref}-{index}",
            kind=CardEventKind(kind),
            authorization_ref=auth_ref,
            amount_minor=amount_minor,
            currency="EUR",
            account_id=account_id if kind == "authorization" else None,
        )
        outcomes.append(service.apply_card_event(tenant.id, event).value)
    return outcomes


def final_state(call: Any, tenant: Tenant, auth_ref: str) -> dict[str, Any]:
    from moncore.ledger.provider_events import CardEvent, CardEventKind, card_txn_id
    from moncore.store import provider_events

    probe = CardEvent("sandbox_cards", "-", CardEventKind.CAPTURE, auth_ref, 1, "EUR")
    txn_id = card_txn_id(tenant.id, probe)
    view = call("GET", f"/v1/transactions/{txn_id}", key=tenant.key).json()
    assert provider_events.parked_for(tenant.id, txn_id) == []  # nothing left waiting
    return {
        "status": view["status"],
        "captured_minor": view["captured_minor"],
        "released_minor": view["released_minor"],
        "reversed_minor": view["reversed_minor"],
        "held_minor": view["held_minor"],
        "reversals": len(view["reversals"]),
        "events": sorted((s.get("event") or "", s.get("amount_minor") or 0) for s in view["lifecycle"]),
    }


@pytest.mark.parametrize(
    ("sequence", "expected", "spent_minor"),
    [
        (
            CAPTURES_AND_RELEASE,
            {"status": "SETTLED", "captured_minor": 8_500, "released_minor": 1_500, "reversed_minor": 0},
            8_500,
        ),
        (
            CAPTURE_AND_REFUND,
            {"status": "SETTLED", "captured_minor": 5_000, "released_minor": 0, "reversed_minor": 2_000},
            3_000,
        ),
    ],
    ids=["captures-and-release", "capture-and-refund"],
)
def test_every_order_converges(
    call: Any, card_tenant: Tenant, sequence: list[tuple[str, int]], expected: dict[str, int], spent_minor: int
) -> None:
    card = new_account(call, card_tenant, new_user(call, card_tenant))
    orders = list(itertools.permutations(list(enumerate(sequence))))
    fund(call, card_tenant, card, 10_000 * len(orders))
    finals = []
    for count, order in enumerate(orders, start=1):
        auth_ref = f"auth-{uuid.uuid4().hex[:12]}"
        events = [(index, kind, amount) for index, (kind, amount) in order]
        outcomes = deliver(card_tenant, card, auth_ref, events)
        assert "rejected" not in outcomes, (order, outcomes)
        again = deliver(card_tenant, card, auth_ref, list(reversed(events)))  # every event redelivered
        assert set(again) == {"duplicate"}, (order, again)
        state = final_state(call, card_tenant, auth_ref)
        assert {k: state[k] for k in expected} == expected, order
        assert state["held_minor"] == 0
        finals.append(state)
        got = balance(call, card_tenant, card)
        assert (got["posted_minor"], got["pending_out_minor"], got["pending_in_minor"]) == (
            10_000 * len(orders) - spent_minor * count,
            0,
            0,
        ), order
    assert all(state == finals[0] for state in finals)  # the same lifecycle, whatever the order


def test_a_capture_after_the_hold_closed_is_rejected_not_applied(call: Any, card_tenant: Tenant) -> None:
    card = new_account(call, card_tenant, new_user(call, card_tenant))
    fund(call, card_tenant, card, 10_000)
    auth_ref = f"auth-{uuid.uuid4().hex[:12]}"
    assert deliver(card_tenant, card, auth_ref, [(0, "authorization", 1_000), (1, "reversal", 1_000)]) == [
        "applied",
        "applied",
    ]
    assert deliver(card_tenant, card, auth_ref, [(2, "capture", 1_000)]) == ["rejected"]
    assert final_state(call, card_tenant, auth_ref)["status"] == "REVERSED"
    assert balance(call, card_tenant, card)["available_minor"] == 10_000
