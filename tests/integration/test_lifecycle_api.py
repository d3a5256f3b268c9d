"""Transaction lifecycle through the partner API (DESIGN.md invariant 9): holds, partial and repeated captures, void,
expiry, reversal linked both ways, and the refusals that keep each phase to at most once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture
def pair(call: Any, admin_key: str) -> tuple[Tenant, str, str]:
    tenant = new_tenant(call, admin_key, "Lifecycle")
    payer = new_account(call, tenant, new_user(call, tenant))
    payee = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, payer, 10_000)
    return tenant, payer, payee


def hold(call: Any, tenant: Tenant, payer: str, payee: str, amount_minor: int, **extra: Any) -> dict[str, Any]:
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": amount_minor, "currency": "EUR"}
    made = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body | {"capture": "manual"} | extra)
    assert made.status == 201, made.json()
    return dict(made.json())


def step(call: Any, tenant: Tenant, txn_id: str, action: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else idem()
    return call("POST", f"/v1/transactions/{txn_id}/{action}", key=tenant.key, headers=headers, json=body)


def parts(call: Any, tenant: Tenant, account_id: str) -> tuple[int, int, int, int]:
    got = balance(call, tenant, account_id)
    return got["posted_minor"], got["pending_in_minor"], got["pending_out_minor"], got["available_minor"]


def test_hold_counts_against_available_and_captures_settle_it_in_parts(
    call: Any, pair: tuple[Tenant, str, str]
) -> None:
    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 4_000)
    assert txn["status"] == "AUTHORIZED" and txn["held_minor"] == 4_000 and txn["capture"] == "manual"
    assert parts(call, tenant, payer) == (10_000, 0, 4_000, 6_000)
    assert parts(call, tenant, payee) == (0, 4_000, 0, 0)  # incoming money is not spendable before capture

    first = step(call, tenant, txn["id"], "capture", {"amount_minor": 1_500})
    assert first.status == 200, first.json()
    assert (first.json()["status"], first.json()["captured_minor"], first.json()["held_minor"]) == (
        "AUTHORIZED",
        1_500,
        2_500,
    )
    assert parts(call, tenant, payer) == (8_500, 0, 2_500, 6_000)
    assert parts(call, tenant, payee) == (1_500, 2_500, 0, 1_500)

    rest = step(call, tenant, txn["id"], "capture", {})  # default: the rest of the hold
    assert rest.status == 200 and rest.json()["status"] == "SETTLED" and rest.json()["captured_minor"] == 4_000
    assert parts(call, tenant, payer) == (6_000, 0, 0, 6_000)
    assert parts(call, tenant, payee) == (4_000, 0, 0, 4_000)

    view = call("GET", f"/v1/transactions/{txn['id']}", key=tenant.key).json()
    assert [(s["status"], s.get("event")) for s in view["lifecycle"]] == [
        ("CREATED", None),
        ("AUTHORIZED", "authorized"),
        ("AUTHORIZED", "captured"),
        ("SETTLED", "captured"),
    ]
    assert all(s["at"].endswith("Z") for s in view["lifecycle"])
    for seq in {leg["seq"] for leg in view["legs"]}:
        by_ccy = sum(leg["amount_minor"] for leg in view["legs"] if leg["seq"] == seq)
        assert by_ccy == 0

    again = step(call, tenant, txn["id"], "capture", {"amount_minor": 1})
    assert again.status == 409 and again.json()["code"] == "invalid_state_transition"
    assert parts(call, tenant, payer) == (6_000, 0, 0, 6_000)


def test_over_capture_is_refused_and_nothing_moves(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 1_000)
    refused = step(call, tenant, txn["id"], "capture", {"amount_minor": 1_001})
    assert refused.status == 422 and refused.json()["code"] == "validation_error"
    assert parts(call, tenant, payer) == (10_000, 0, 1_000, 9_000)


def test_void_releases_the_hold_and_is_final(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 2_500)
    voided = step(call, tenant, txn["id"], "void", {})
    assert voided.status == 200 and voided.json()["status"] == "REVERSED"
    assert parts(call, tenant, payer) == (10_000, 0, 0, 10_000)
    assert parts(call, tenant, payee) == (0, 0, 0, 0)
    for action in ("void", "capture"):
        refused = step(call, tenant, txn["id"], action, {})
        assert refused.status == 409 and refused.json()["code"] == "invalid_state_transition"


def test_void_after_a_partial_capture_releases_the_rest_and_settles(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 3_000)
    assert step(call, tenant, txn["id"], "capture", {"amount_minor": 1_000}).status == 200
    closed = step(call, tenant, txn["id"], "void", {})
    assert closed.status == 200
    assert (closed.json()["status"], closed.json()["captured_minor"], closed.json()["released_minor"]) == (
        "SETTLED",
        1_000,
        2_000,
    )
    assert parts(call, tenant, payer) == (9_000, 0, 0, 9_000)
    assert parts(call, tenant, payee) == (1_000, 0, 0, 1_000)


def test_a_hold_cannot_exceed_available(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    hold(call, tenant, payer, payee, 9_000)
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 1_001, "currency": "EUR"}
    refused = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body)
    assert refused.status == 422 and refused.json()["code"] == "insufficient_funds"


def test_reversal_is_a_new_transaction_linked_both_ways(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 5_000, "currency": "EUR"}
    original = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body).json()

    partial = step(call, tenant, original["id"], "reverse", {"amount_minor": 2_000, "reason": "refund"})
    assert partial.status == 201, partial.json()
    reversal = partial.json()
    assert reversal["type"] == "reversal" and reversal["status"] == "SETTLED"
    assert reversal["reverses_txn_id"] == original["id"] and reversal["id"] != original["id"]
    assert parts(call, tenant, payer) == (7_000, 0, 0, 7_000)
    assert parts(call, tenant, payee) == (3_000, 0, 0, 3_000)

    linked = call("GET", f"/v1/transactions/{original['id']}", key=tenant.key).json()
    assert linked["status"] == "SETTLED" and linked["reversed_minor"] == 2_000
    assert [r["txn_id"] for r in linked["reversals"]] == [reversal["id"]]
    assert linked["lifecycle"][-1]["event"] == "reversal_linked"
    assert len([leg for leg in linked["legs"] if leg["seq"] == 1]) == 2  # the original legs are never touched

    too_much = step(call, tenant, original["id"], "reverse", {"amount_minor": 3_001, "reason": "refund"})
    assert too_much.status == 422
    rest = step(call, tenant, original["id"], "reverse", {"reason": "refund the rest"})
    assert rest.status == 201 and rest.json()["amount_minor"] == 3_000
    done = step(call, tenant, original["id"], "reverse", {"reason": "again"})
    assert done.status == 409 and done.json()["code"] == "invalid_state_transition"
    of_reversal = step(call, tenant, reversal["id"], "reverse", {"reason": "undo"})
    assert of_reversal.status == 409
    assert parts(call, tenant, payer) == (10_000, 0, 0, 10_000)
    assert parts(call, tenant, payee) == (0, 0, 0, 0)


def test_reversal_needs_the_payee_to_still_hold_the_money(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 1_000, "currency": "EUR"}
    original = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body).json()
    spend = {"from_account_id": payee, "to_account_id": payer, "amount_minor": 600, "currency": "EUR"}
    assert call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=spend).status == 201
    refused = step(call, tenant, original["id"], "reverse", {"reason": "refund"})
    assert refused.status == 422 and refused.json()["code"] == "insufficient_funds"
    view = call("GET", f"/v1/transactions/{original['id']}", key=tenant.key).json()
    assert view["reversed_minor"] == 0 and view["reversals"] == []


def test_an_authorized_transaction_is_voided_not_reversed(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 100)
    refused = step(call, tenant, txn["id"], "reverse", {"reason": "no"})
    assert refused.status == 409 and refused.json()["code"] == "invalid_state_transition"


def test_lifecycle_steps_replay_and_refuse_key_reuse(call: Any, pair: tuple[Tenant, str, str]) -> None:
    tenant, payer, payee = pair
    first = hold(call, tenant, payer, payee, 1_000)
    second = hold(call, tenant, payer, payee, 1_000)
    captured = step(call, tenant, first["id"], "capture", {"amount_minor": 400}, key="cap-1")
    replayed = step(call, tenant, first["id"], "capture", {"amount_minor": 400}, key="cap-1")
    assert replayed.status == 200 and replayed.headers["Idempotency-Replayed"] == "true"
    assert replayed.json() == captured.json()
    other_body = step(call, tenant, first["id"], "capture", {"amount_minor": 500}, key="cap-1")
    assert other_body.status == 409 and other_body.json()["code"] == "idempotency_key_reused"
    other_txn = step(call, tenant, second["id"], "capture", {"amount_minor": 400}, key="cap-1")
    assert other_txn.status == 409 and other_txn.json()["code"] == "idempotency_key_reused"
    view = call("GET", f"/v1/transactions/{first['id']}", key=tenant.key).json()
    assert view["captured_minor"] == 400
    assert call("GET", f"/v1/transactions/{second['id']}", key=tenant.key).json()["captured_minor"] == 0


def test_capture_after_the_idempotency_record_is_gone_still_happens_once(
    call: Any, pair: tuple[Tenant, str, str]
) -> None:
    """The op guard in the ledger, not the idempotency cache, is the last line: drop the record and retry."""
    import os

    import boto3

    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 1_000)
    assert step(call, tenant, txn["id"], "capture", {"amount_minor": 300}, key="cap-gone").status == 200
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_IDEMPOTENCY_TABLE"])
    table.delete_item(Key={"pk": f"{tenant.id}#cap-gone"})
    again = step(call, tenant, txn["id"], "capture", {"amount_minor": 300}, key="cap-gone")
    assert again.status == 200 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json()["captured_minor"] == 300


def test_expired_holds_are_released_by_the_sweep(call: Any, pair: tuple[Tenant, str, str]) -> None:
    from moncore.ledger.lifecycle import LifecycleService

    tenant, payer, payee = pair
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    untouched = hold(call, tenant, payer, payee, 1_000, hold_expires_at=soon)
    partly = hold(call, tenant, payer, payee, 2_000, hold_expires_at=soon)
    open_hold = hold(call, tenant, payer, payee, 500, hold_expires_at=later)
    assert step(call, tenant, partly["id"], "capture", {"amount_minor": 500}).status == 200

    assert LifecycleService().expire_due_holds(tenant.id) == []  # nothing due yet
    time.sleep(1.6)
    released = LifecycleService().expire_due_holds(tenant.id)
    assert sorted(released) == sorted([untouched["id"], partly["id"]])
    assert LifecycleService().expire_due_holds(tenant.id) == []  # closed holds leave the index

    expired = call("GET", f"/v1/transactions/{untouched['id']}", key=tenant.key).json()
    assert expired["status"] == "REVERSED" and expired["lifecycle"][-1]["event"] == "expired"
    assert expired["lifecycle"][-1]["actor"] == "system:hold-expiry"
    settled = call("GET", f"/v1/transactions/{partly['id']}", key=tenant.key).json()
    assert (settled["status"], settled["captured_minor"], settled["released_minor"]) == ("SETTLED", 500, 1_500)
    still = call("GET", f"/v1/transactions/{open_hold['id']}", key=tenant.key).json()
    assert still["status"] == "AUTHORIZED"
    assert parts(call, tenant, payer) == (9_500, 0, 500, 9_000)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"capture": "later"}, "capture"),
        ({"capture": "manual", "hold_expires_at": "tomorrow"}, "hold_expires_at"),
        ({"capture": "manual", "hold_expires_at": "2001-01-01T00:00:00Z"}, "hold_expires_at"),
        ({"capture": "manual", "hold_expires_at": "2999-01-01T00:00:00Z"}, "hold_expires_at"),
        ({"capture": "auto", "hold_expires_at": "2999-01-01T00:00:00Z"}, "hold_expires_at"),
    ],
)
def test_bad_capture_options_are_422(
    call: Any, pair: tuple[Tenant, str, str], extra: dict[str, Any], field: str
) -> None:
    tenant, payer, payee = pair
    body = {"from_account_id": payer, "to_account_id": payee, "amount_minor": 100, "currency": "EUR"} | extra
    refused = call("POST", "/v1/transfers", key=tenant.key, headers=idem(), json=body)
    assert refused.status == 422, refused.json()
    assert parts(call, tenant, payer) == (10_000, 0, 0, 10_000)


def test_lifecycle_steps_on_unknown_or_foreign_transactions_are_404(
    call: Any, admin_key: str, pair: tuple[Tenant, str, str]
) -> None:
    tenant, payer, payee = pair
    txn = hold(call, tenant, payer, payee, 100)
    stranger = new_tenant(call, admin_key, "Stranger")
    for action in ("capture", "void"):
        assert step(call, stranger, txn["id"], action, {}).status == 404
        assert step(call, tenant, "txn_missing", action, {}).status == 404
    assert step(call, stranger, txn["id"], "reverse", {"reason": "x"}).status == 404
