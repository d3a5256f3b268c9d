"""The README's curl walkthrough, over real HTTP against the stack `make run` starts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_new_user_follows_the_readme(stack: Any) -> None:
    base = stack.base_url
    headers = {"Authorization": f"Bearer {stack.tenant_key}", "Content-Type": "application/json"}

    def post(path: str, body: dict[str, Any], key: str | None = None) -> requests.Response:
        return requests.post(
            f"{base}{path}", json=body, timeout=30, headers=headers | {"Idempotency-Key": key or str(uuid.uuid4())}
        )

    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    spec = requests.get(f"{base}/v1/openapi.json", timeout=10)
    assert spec.status_code == 200 and "/v1/transfers" in spec.json()["paths"]
    assert requests.get(f"{base}/docs", timeout=10).status_code == 200

    user = post(
        "/v1/users", {"external_ref": f"alice-{uuid.uuid4().hex[:8]}", "full_name": "Alice Martin", "country": "FR"}
    ).json()["id"]
    a = post("/v1/accounts", {"user_id": user, "currency": "EUR"}).json()["id"]
    b = post("/v1/accounts", {"user_id": user, "currency": "EUR"}).json()["id"]
    funded = post("/v1/fundings", {"account_id": a, "amount_minor": 10000, "currency": "EUR"})
    assert funded.status_code == 201 and funded.json()["status"] == "SETTLED"
    pay_key = str(uuid.uuid4())
    body = {"from_account_id": a, "to_account_id": b, "amount_minor": 2550, "currency": "EUR", "reference": "rent"}
    paid = post("/v1/transfers", body, pay_key)
    assert paid.status_code == 201 and paid.json()["amount"] == "25.50"
    replay = post("/v1/transfers", body, pay_key)
    assert replay.status_code == 201 and replay.headers["Idempotency-Replayed"] == "true"
    balance = requests.get(f"{base}/v1/accounts/{a}", headers=headers, timeout=10).json()["balance"]
    assert balance["available_minor"] == 7450 and balance["available"] == "74.50"
    entries = requests.get(f"{base}/v1/accounts/{a}/entries", params={"limit": 10}, headers=headers, timeout=10)
    assert [e["amount_minor"] for e in entries.json()["items"]] == [10000, -2550]

    # the lifecycle block: hold 30.00, capture 10.00, void the rest, reverse 5.00, read the lifecycle and a past balance
    hold = {"from_account_id": a, "to_account_id": b, "amount_minor": 3000, "currency": "EUR", "capture": "manual"}
    txn = post("/v1/transfers", hold).json()["id"]
    captured = post(f"/v1/transactions/{txn}/capture", {"amount_minor": 1000}).json()
    assert (captured["status"], captured["captured_minor"], captured["held_minor"]) == ("AUTHORIZED", 1000, 2000)
    voided = post(f"/v1/transactions/{txn}/void", {}).json()
    assert (voided["status"], voided["released_minor"]) == ("SETTLED", 2000)
    reversal = post(f"/v1/transactions/{txn}/reverse", {"amount_minor": 500, "reason": "refund"})
    assert reversal.status_code == 201 and reversal.json()["reverses_txn_id"] == txn
    lifecycle = requests.get(f"{base}/v1/transactions/{txn}", headers=headers, timeout=10).json()["lifecycle"]
    assert [step.get("event") for step in lifecycle] == [None, "authorized", "captured", "voided", "reversal_linked"]
    past = requests.get(
        f"{base}/v1/accounts/{a}", params={"as_of": "2026-01-01T00:00:00Z"}, headers=headers, timeout=10
    )
    assert past.status_code == 200 and past.json()["balance"]["posted_minor"] == 0
    now = requests.get(f"{base}/v1/accounts/{a}", headers=headers, timeout=10).json()["balance"]
    assert now["available_minor"] == 7450 - 1000 + 500


def test_gateway_errors_are_problem_json_over_http(stack: Any) -> None:
    no_key = requests.get(f"{stack.base_url}/v1/accounts/acc_x", timeout=10)
    assert no_key.status_code == 401 and no_key.headers["Content-Type"] == "application/problem+json"
    assert no_key.headers["X-Correlation-Id"]
    unknown = requests.get(f"{stack.base_url}/nope", timeout=10)
    assert unknown.status_code in (403, 404) and unknown.headers["Content-Type"] == "application/problem+json"
    echoed = requests.get(
        f"{stack.base_url}/v1/accounts/acc_x",
        timeout=10,
        headers={"Authorization": f"Bearer {stack.tenant_key}", "X-Correlation-Id": "trace-42"},
    )
    assert echoed.status_code == 404 and echoed.headers["X-Correlation-Id"] == "trace-42"
