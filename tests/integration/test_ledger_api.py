"""Partner plane through API Gateway proxy events: users, accounts, fundings, transfers, reads, idempotency."""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from typing import Any

import boto3
import pytest

from tests.integration.helpers import (
    Tenant,
    balance,
    fund,
    idem,
    ledger_items,
    new_account,
    new_tenant,
    new_user,
    table_items,
)

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture
def tenant(call: Any, admin_key: str) -> Tenant:
    return new_tenant(call, admin_key)


def test_user_account_funding_transfer_and_reads(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    funding = fund(call, tenant, a, 10_000)
    assert funding["status"] == "SETTLED" and funding["type"] == "funding"
    # The local stack's tenants use the instant sandbox adapter (docs/providers.md): settled in its answer.
    assert funding["provider"]["name"] == "sandbox_open_banking_instant" and funding["provider"]["reference"]

    sent = call(
        "POST",
        "/v1/transfers",
        key=tenant.key,
        headers=idem() | {"X-Correlation-Id": "corr-123"},
        json={"from_account_id": a, "to_account_id": b, "amount_minor": 2_550, "currency": "EUR", "reference": "rent"},
    )
    assert sent.status == 201, sent.json()
    assert sent.headers["X-Correlation-Id"] == "corr-123"
    txn = sent.json()
    assert txn["status"] == "SETTLED" and txn["amount"] == "25.50" and txn["reference"] == "rent"
    assert sorted((leg["account_id"], leg["amount_minor"]) for leg in txn["legs"]) == sorted([(a, -2550), (b, 2550)])
    assert txn["compliance"]["decision"] == "allow"

    assert balance(call, tenant, a)["available_minor"] == 7_450
    assert balance(call, tenant, b) | {"version": 0} == {
        "posted_minor": 2550,
        "pending_minor": 0,
        "available_minor": 2550,
        "pending_in_minor": 0,
        "pending_out_minor": 0,
        "posted": "25.50",
        "pending": "0.00",
        "available": "25.50",
        "version": 0,
    }

    got = call("GET", f"/v1/transactions/{txn['id']}", key=tenant.key)
    assert got.status == 200 and got.json()["legs"] == txn["legs"]
    assert got.json()["correlation_id"] == "corr-123"

    # the audit event carries the caller's correlation id and a payload hash
    events = [e for e in table_items("MONCORE_AUDIT_TABLE") if e.get("subject_id") == txn["id"]]
    assert len(events) == 1 and events[0]["correlation_id"] == "corr-123" and len(events[0]["payload_hash"]) == 64


def test_every_transaction_sums_to_zero_and_balances_derive_from_entries(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    accounts = [new_account(call, tenant, user) for _ in range(3)]
    fund(call, tenant, accounts[0], 5_000)
    for i in range(6):
        src, dst = accounts[i % 3], accounts[(i + 1) % 3]
        call(
            "POST",
            "/v1/transfers",
            key=tenant.key,
            headers=idem(),
            json={"from_account_id": src, "to_account_id": dst, "amount_minor": 700, "currency": "EUR"},
        )
    legs = [i for i in ledger_items(tenant.id) if i["sk"].startswith("LEG#")]
    per_txn: dict[str, int] = defaultdict(int)
    per_account: dict[str, int] = defaultdict(int)
    for leg in legs:
        per_txn[leg["txn_id"]] += int(leg["leg_amount_minor"])
        per_account[leg["account_id"]] += int(leg["leg_amount_minor"])
    assert per_txn and all(total == 0 for total in per_txn.values())
    for account_id, total in per_account.items():
        assert balance(call, tenant, account_id)["posted_minor"] == total
    assert sum(per_account.values()) == 0  # system clearing account included


def test_entries_paginate_with_cursor(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 1_000)
    for _ in range(4):
        call(
            "POST",
            "/v1/transfers",
            key=tenant.key,
            headers=idem(),
            json={"from_account_id": a, "to_account_id": b, "amount_minor": 10, "currency": "EUR"},
        )
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = call(
            "GET",
            f"/v1/accounts/{a}/entries",
            key=tenant.key,
            query={"limit": "2"} | ({"cursor": cursor} if cursor else {}),
        )
        assert page.status == 200, page.json()
        seen.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [e["amount_minor"] for e in seen] == [1000, -10, -10, -10, -10]
    assert [e["recorded_at"] for e in seen] == sorted(e["recorded_at"] for e in seen)


def test_cursor_of_another_account_is_refused(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 100)
    fund(call, tenant, a, 100)
    page = call("GET", f"/v1/accounts/{a}/entries", key=tenant.key, query={"limit": "1"})
    cursor = page.json()["next_cursor"]
    assert cursor
    other = call("GET", f"/v1/accounts/{b}/entries", key=tenant.key, query={"cursor": cursor})
    assert other.status == 422 and other.json()["code"] == "validation_error"
    garbage = call("GET", f"/v1/accounts/{a}/entries", key=tenant.key, query={"cursor": "not-a-cursor"})
    assert garbage.status == 422


def test_insufficient_funds_posts_nothing(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 100)
    before = ledger_items(tenant.id)
    refused = call(
        "POST",
        "/v1/transfers",
        key=tenant.key,
        headers=idem(),
        json={"from_account_id": a, "to_account_id": b, "amount_minor": 101, "currency": "EUR"},
    )
    assert refused.status == 422 and refused.json()["code"] == "insufficient_funds"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert ledger_items(tenant.id) == before
    assert balance(call, tenant, a)["available_minor"] == 100
    assert balance(call, tenant, b)["available_minor"] == 0


def test_replay_answers_the_same_and_posts_nothing(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 1_000)
    headers = idem()
    body = {"from_account_id": a, "to_account_id": b, "amount_minor": 300, "currency": "EUR"}
    first = call("POST", "/v1/transfers", key=tenant.key, headers=headers, json=body)
    again = call("POST", "/v1/transfers", key=tenant.key, headers=headers, json=body)
    assert first.status == again.status == 201
    assert "Idempotency-Replayed" not in first.headers
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    assert balance(call, tenant, a)["available_minor"] == 700

    reused = call("POST", "/v1/transfers", key=tenant.key, headers=headers, json=body | {"amount_minor": 301})
    assert reused.status == 409 and reused.json()["code"] == "idempotency_key_reused"
    assert "amount_minor" in reused.json()["detail"]
    assert [e["loc"][-1] for e in reused.json()["errors"]] == ["amount_minor"]
    assert balance(call, tenant, a)["available_minor"] == 700


def test_rejections_are_replayed_too(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    headers = idem()
    body = {"from_account_id": a, "to_account_id": b, "amount_minor": 5, "currency": "EUR"}
    first = call("POST", "/v1/transfers", key=tenant.key, headers=headers, json=body)
    assert first.status == 422 and first.json()["code"] == "insufficient_funds"
    again = call("POST", "/v1/transfers", key=tenant.key, headers=headers, json=body)
    assert again.status == 422 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()


def test_ledger_refuses_second_posting_after_idempotency_record_is_gone(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    a, b = new_account(call, tenant, user), new_account(call, tenant, user)
    fund(call, tenant, a, 1_000)
    key = str(uuid.uuid4())
    body = {"from_account_id": a, "to_account_id": b, "amount_minor": 400, "currency": "EUR"}
    first = call("POST", "/v1/transfers", key=tenant.key, headers={"Idempotency-Key": key}, json=body)
    assert first.status == 201
    # Simulate TTL expiry: the idempotency record disappears.
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_IDEMPOTENCY_TABLE"])
    table.delete_item(Key={"pk": f"{tenant.id}#{key}"})

    again = call("POST", "/v1/transfers", key=tenant.key, headers={"Idempotency-Key": key}, json=body)
    assert again.status == 201 and again.headers["Idempotency-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert balance(call, tenant, a)["available_minor"] == 600  # posted once

    table.delete_item(Key={"pk": f"{tenant.id}#{key}"})
    changed = call(
        "POST", "/v1/transfers", key=tenant.key, headers={"Idempotency-Key": key}, json=body | {"amount_minor": 1}
    )
    assert changed.status == 409 and changed.json()["code"] == "idempotency_key_reused"
    assert "amount_minor" in changed.json()["detail"]
    assert balance(call, tenant, a)["available_minor"] == 600


def test_same_key_on_another_tenant_is_independent(call: Any, admin_key: str, tenant: Tenant) -> None:
    other = new_tenant(call, admin_key, "Other")
    key = {"Idempotency-Key": "shared-key"}
    for t in (tenant, other):
        made = call(
            "POST",
            "/v1/users",
            key=t.key,
            headers=key,
            json={"external_ref": "same", "full_name": "Same Name", "country": "FR"},
        )
        assert made.status == 201 and "Idempotency-Replayed" not in made.headers


def test_currency_mismatch_and_system_accounts(call: Any, tenant: Tenant) -> None:
    user = new_user(call, tenant)
    eur, gbp = new_account(call, tenant, user, "EUR"), new_account(call, tenant, user, "GBP")
    fund(call, tenant, eur, 100)
    mixed = call(
        "POST",
        "/v1/transfers",
        key=tenant.key,
        headers=idem(),
        json={"from_account_id": eur, "to_account_id": gbp, "amount_minor": 10, "currency": "EUR"},
    )
    assert mixed.status == 422 and mixed.json()["code"] == "currency_mismatch"
    from_clearing = call(
        "POST",
        "/v1/transfers",
        key=tenant.key,
        headers=idem(),
        json={
            "from_account_id": "sys_funding_clearing_eur",
            "to_account_id": eur,
            "amount_minor": 10,
            "currency": "EUR",
        },
    )
    assert from_clearing.status == 422
    clearing = call("GET", "/v1/accounts/sys_funding_clearing_eur", key=tenant.key)
    assert clearing.status == 200 and clearing.json()["balance"]["posted_minor"] == -100


def test_account_for_unknown_user_and_duplicate_external_ref(call: Any, tenant: Tenant) -> None:
    missing = call(
        "POST", "/v1/accounts", key=tenant.key, headers=idem(), json={"user_id": "usr_nope", "currency": "EUR"}
    )
    assert missing.status == 404 and missing.json()["code"] == "not_found"
    body = {"external_ref": "dup-1", "full_name": "A B", "country": "FR"}
    assert call("POST", "/v1/users", key=tenant.key, headers=idem(), json=body).status == 201
    dup = call("POST", "/v1/users", key=tenant.key, headers=idem(), json=body)
    assert dup.status == 409 and dup.json()["code"] == "already_exists"
