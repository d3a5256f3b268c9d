"""QR payments over HTTP: a merchant account's payment request with an EMVCo merchant-presented payload, paid once by
a payer before it expires, for the request's amount only; tampered payloads, expiry, double and concurrent payments,
mismatches, freezes and the capability gate post nothing."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")

MERCHANT = {"name": "Cafe de Flore", "city": "Paris", "category_code": "5812"}


@dataclass
class Shop:
    tenant: Tenant
    merchant_user: str
    merchant: str  # the merchant account (EUR)
    payer_user: str
    payer: str  # the payer's EUR account, funded 100.00


@pytest.fixture
def shop(call: Any, admin_key: str) -> Shop:
    tenant = new_tenant(call, admin_key, "QR")
    merchant_user, payer_user = new_user(call, tenant), new_user(call, tenant)
    made = call(
        "POST",
        "/v1/accounts",
        key=tenant.key,
        headers=idem(),
        json={"user_id": merchant_user, "currency": "EUR", "merchant": MERCHANT},
    )
    assert made.status == 201, made.json()
    assert made.json()["merchant"] == MERCHANT and made.json()["kind"] == "user"
    payer = new_account(call, tenant, payer_user)
    fund(call, tenant, payer, 10_000)
    return Shop(tenant, merchant_user, made.json()["id"], payer_user, payer)


def request_payment(call: Any, shop: Shop, amount_minor: int = 1_234, **extra: Any) -> Any:
    body = {"merchant_account_id": shop.merchant, "amount_minor": amount_minor, "currency": "EUR"} | extra
    return call("POST", "/v1/qr-payments", key=shop.tenant.key, headers=idem(), json=body)


def open_request(call: Any, shop: Shop, amount_minor: int = 1_234, **extra: Any) -> dict[str, Any]:
    made = request_payment(call, shop, amount_minor, **extra)
    assert made.status == 201, made.json()
    return dict(made.json())


def pay(call: Any, shop: Shop, headers: dict[str, str] | None = None, **body: Any) -> Any:
    body.setdefault("from_account_id", shop.payer)
    return call("POST", "/v1/qr-payments/pay", key=shop.tenant.key, headers=headers or idem(), json=body)


def posted(call: Any, shop: Shop) -> tuple[int, int]:
    return balance(call, shop.tenant, shop.payer)["posted_minor"], balance(call, shop.tenant, shop.merchant)[
        "posted_minor"
    ]


def qr_transactions(tenant: Tenant) -> list[dict[str, Any]]:
    return [i for i in ledger_items(tenant.id) if i["sk"] == "TXN" and i["type"] == "qr_payment"]


def resigned(payload: str) -> str:
    """The payload with its CRC recomputed: an edit made on purpose passes the CRC."""
    from moncore.domain.qr import payload_crc

    return payload[:-4] + payload_crc(payload[:-4])


def test_a_merchant_is_paid_once_through_its_qr_code(call: Any, shop: Shop) -> None:
    from moncore.domain.qr import parse_payload

    created = open_request(call, shop, 1_234, reference="INV-42")
    assert (created["status"], created["amount"], created["currency"], created["txn_id"]) == (
        "OPEN",
        "12.34",
        "EUR",
        None,
    )
    parsed = parse_payload(created["payload"])  # CRC and every object checked
    assert parsed.request_id() == created["id"] and parsed.dynamic and parsed.reference == "INV-42"
    assert (parsed.amount, parsed.currency(), parsed.country, parsed.merchant_name) == (
        "12.34",
        "EUR",
        "FR",
        "Cafe de Flore",
    )
    assert created["merchant"] == MERCHANT | {"country": "FR"}
    assert call("GET", f"/v1/accounts/{shop.merchant}", key=shop.tenant.key).json()["merchant"] == MERCHANT

    key = {"Idempotency-Key": str(uuid.uuid4())}
    paid = pay(call, shop, key, payload=created["payload"], amount_minor=1_234, currency="EUR")
    assert paid.status == 201, paid.json()
    txn = paid.json()
    assert (txn["type"], txn["status"], txn["amount_minor"], txn["reference"]) == (
        "qr_payment",
        "SETTLED",
        1_234,
        created["id"],
    )
    assert [(leg["account_id"], leg["amount_minor"], leg["phase"]) for leg in txn["legs"]] == [
        (shop.payer, -1_234, "SETTLED"),
        (shop.merchant, 1_234, "SETTLED"),
    ]
    checks = txn["compliance"]["checks"]
    assert checks[0] == {"capability": "qr_payments", "mode": "live"} and any(c.get("check") == "aml" for c in checks)
    assert posted(call, shop) == (10_000 - 1_234, 1_234)

    again = pay(call, shop, key, payload=created["payload"], amount_minor=1_234, currency="EUR")
    assert again.status == 201 and again.headers["Idempotency-Replayed"] == "true" and again.json() == txn

    shown = call("GET", f"/v1/qr-payments/{created['id']}", key=shop.tenant.key).json()
    assert (shown["status"], shown["txn_id"], shown["paid_at"]) == ("PAID", txn["id"], txn["created_at"])

    by_id = open_request(call, shop, 500)  # paying by the request's id works the same
    paid_by_id = pay(call, shop, qr_payment_id=by_id["id"])
    assert paid_by_id.status == 201 and paid_by_id.json()["amount_minor"] == 500
    assert posted(call, shop) == (10_000 - 1_734, 1_734)
    assert len(qr_transactions(shop.tenant)) == 2


def test_tampered_and_foreign_payloads_are_refused(call: Any, shop: Shop) -> None:
    created = open_request(call, shop, 1_234)
    payload = created["payload"]
    cheaper = payload.replace("540512.34", "54041.34")  # pay 1.34 instead of 12.34 ...
    assert cheaper != payload
    refused = pay(call, shop, payload=cheaper)
    assert (refused.status, refused.json()["code"]) == (422, "qr_payload_invalid")
    assert "CRC mismatch" in refused.json()["detail"]

    recomputed = pay(call, shop, payload=resigned(cheaper))  # ... even with a correct CRC: not the payload issued
    assert (recomputed.status, recomputed.json()["code"]) == (422, "qr_payload_invalid")
    assert "not the one issued" in recomputed.json()["detail"]

    emvco_example = (  # a valid EMV payload of another scheme
        "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST "
        "TRANSPORT6007BEIJING540523.7253031565502016233030412340603***0708A60086670902ME91320016A01122334499887707"
        "08123456786304"
    )
    foreign = pay(call, shop, payload=resigned(emvco_example + "0000"))
    assert (foreign.status, foreign.json()["code"]) == (422, "qr_payload_invalid")
    assert "not a MonCore payment request" in foreign.json()["detail"]
    truncated = pay(call, shop, payload=payload[:-10])
    assert (truncated.status, truncated.json()["code"]) == (422, "qr_payload_invalid")

    assert posted(call, shop) == (10_000, 0) and not qr_transactions(shop.tenant)
    assert call("GET", f"/v1/qr-payments/{created['id']}", key=shop.tenant.key).json()["status"] == "OPEN"
    assert pay(call, shop, payload=payload).status == 201  # the genuine payload still pays


def test_an_expired_request_posts_nothing(call: Any, shop: Shop) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    created = open_request(call, shop, 700, expires_at=soon.isoformat().replace("+00:00", "Z"))
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    refused = request_payment(call, shop, 700, expires_at=past)
    assert (refused.status, refused.json()["code"]) == (422, "validation_error")
    too_far = (datetime.now(UTC) + timedelta(days=8)).isoformat()
    assert request_payment(call, shop, 700, expires_at=too_far).status == 422
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)

    expired = pay(call, shop, payload=created["payload"])
    assert (expired.status, expired.json()["code"]) == (422, "qr_payment_expired")
    assert posted(call, shop) == (10_000, 0) and not qr_transactions(shop.tenant)
    shown = call("GET", f"/v1/qr-payments/{created['id']}", key=shop.tenant.key).json()
    assert (shown["status"], shown["txn_id"]) == ("EXPIRED", None)


def test_a_second_payment_is_refused(call: Any, admin_key: str, shop: Shop) -> None:
    created = open_request(call, shop, 1_000)
    assert pay(call, shop, payload=created["payload"]).status == 201
    other_payer = new_account(call, shop.tenant, new_user(call, shop.tenant))
    fund(call, shop.tenant, other_payer, 5_000)
    again = pay(call, shop, payload=created["payload"], from_account_id=other_payer)
    assert (again.status, again.json()["code"]) == (409, "qr_payment_already_paid")
    same_payer = pay(call, shop, qr_payment_id=created["id"])
    assert (same_payer.status, same_payer.json()["code"]) == (409, "qr_payment_already_paid")
    assert posted(call, shop) == (9_000, 1_000) and balance(call, shop.tenant, other_payer)["posted_minor"] == 5_000
    assert len(qr_transactions(shop.tenant)) == 1


def test_concurrent_payments_post_exactly_once(call: Any, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 payers' requests read the request as unpaid together (the early read is held at a barrier until all have
    made it), so only the guard in the posting's own TransactWriteItems can stop the other seven."""
    from moncore.domain.context import Caller
    from moncore.domain.errors import DomainError
    from moncore.http.idempotency import request_identity
    from moncore.ledger.qr import QrService
    from moncore.store import offers

    workers = 8
    created = open_request(call, shop, 2_500)
    payers = [shop.payer] + [new_account(call, shop.tenant, new_user(call, shop.tenant)) for _ in range(workers - 1)]
    for payer in payers[1:]:
        fund(call, shop.tenant, payer, 2_500)
    read_owner = offers.guard_owner
    everyone_read = threading.Barrier(workers)
    waited = threading.local()

    def owner_then_wait(tenant_id: str, guard: str) -> str | None:
        owner = read_owner(tenant_id, guard)
        if not getattr(waited, "done", False):
            waited.done = True
            everyone_read.wait(timeout=30)
        return owner

    monkeypatch.setattr(offers, "guard_owner", owner_then_wait)
    service = QrService()
    caller = Caller(
        tenant_id=shop.tenant.id, actor=f"key:{shop.tenant.key_id}", role="tenant", correlation_id="qr-race"
    )

    def attempt(payer: str) -> Any:
        body = {"from_account_id": payer, "payload": created["payload"]}
        try:
            return service.pay(
                caller, request_identity(uuid.uuid4().hex, "POST /v1/qr-payments/pay", body), **body
            ).body
        except DomainError as refused:
            return refused

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(attempt, payers))
    paid = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert len(paid) == 1, outcomes
    assert all((r.status, r.code) == (409, "qr_payment_already_paid") for r in refused), refused
    winner = paid[0]["legs"][0]["account_id"]
    assert balance(call, shop.tenant, shop.merchant)["posted_minor"] == 2_500
    for payer in payers:
        start = 10_000 if payer == shop.payer else 2_500
        assert balance(call, shop.tenant, payer)["posted_minor"] == start - (2_500 if payer == winner else 0)
    assert len(qr_transactions(shop.tenant)) == 1


def test_amount_currency_and_account_mismatches(call: Any, admin_key: str, shop: Shop) -> None:
    created = open_request(call, shop, 1_234)
    cases = [
        ({"payload": created["payload"], "amount_minor": 1_000}, 422, "qr_payment_mismatch"),
        ({"payload": created["payload"], "currency": "USD"}, 422, "qr_payment_mismatch"),
        ({"payload": created["payload"], "qr_payment_id": created["id"]}, 422, "validation_error"),  # both
        ({}, 422, "validation_error"),  # neither
        ({"qr_payment_id": "qr_unknown"}, 404, "not_found"),
        ({"payload": created["payload"], "from_account_id": shop.merchant}, 422, "validation_error"),
    ]
    usd_payer = new_account(call, shop.tenant, shop.payer_user, "USD")
    cases.append(({"payload": created["payload"], "from_account_id": usd_payer}, 422, "currency_mismatch"))
    for body, status, code in cases:
        refused = pay(call, shop, **body)
        assert (refused.status, refused.json()["code"]) == (status, code), (body, refused.json())

    plain = new_account(call, shop.tenant, shop.merchant_user)  # not a merchant account
    not_merchant = request_payment(call, shop, 100, merchant_account_id=plain)
    assert (not_merchant.status, not_merchant.json()["code"]) == (422, "validation_error")
    wrong_currency = request_payment(call, shop, 100, currency="USD")
    assert (wrong_currency.status, wrong_currency.json()["code"]) == (422, "currency_mismatch")
    too_long = request_payment(call, shop, 100, reference="r" * 26)
    assert too_long.status == 422
    bad_profile = call(
        "POST",
        "/v1/accounts",
        key=shop.tenant.key,
        headers=idem(),
        json={"user_id": shop.merchant_user, "currency": "EUR", "merchant": MERCHANT | {"category_code": "58"}},
    )
    assert bad_profile.status == 422

    frozen = call(
        "POST", f"/admin/v1/users/{shop.tenant.id}/{shop.payer_user}/freeze", key=admin_key, json={"reason": "test"}
    )
    assert frozen.status == 200, frozen.json()
    refused = pay(call, shop, payload=created["payload"])
    assert (refused.status, refused.json()["code"]) == (422, "account_frozen")
    assert posted(call, shop) == (10_000, 0) and not qr_transactions(shop.tenant)
    assert call("GET", f"/v1/qr-payments/{created['id']}", key=shop.tenant.key).json()["status"] == "OPEN"


def test_the_capability_gates_requests_and_payments(call: Any, admin_key: str, shop: Shop) -> None:
    created = open_request(call, shop, 300)
    off = call(
        "POST",
        f"/admin/v1/tenants/{shop.tenant.id}/capabilities",
        key=admin_key,
        headers=idem(),
        json={"capability": "qr_payments", "mode": "disabled"},
    )
    assert off.status == 200, off.json()
    for refused in (request_payment(call, shop, 300), pay(call, shop, payload=created["payload"])):
        assert (refused.status, refused.json()["code"]) == (403, "capability_disabled")
    assert posted(call, shop) == (10_000, 0) and not qr_transactions(shop.tenant)
