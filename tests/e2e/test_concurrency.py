"""Concurrency over real HTTP: 8 threads x 200 random transfers among 5 accounts, duplicate Idempotency-Keys mixed in.

Then, from the API alone: zero-sum per currency, every balance equals the sum of its entries, no available balance
below zero, exactly one transaction per accepted key, and replays posted nothing.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

THREADS = 8
TRANSFERS_PER_THREAD = 200
ACCOUNTS = 5
FUNDING_MINOR = 20_000


class Client:
    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.local = threading.local()
        self.headers = {"Authorization": f"Bearer {key}"}

    def _session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session  # type: ignore[no-any-return]

    def post(self, path: str, body: dict[str, Any], key: str) -> requests.Response:
        return self._session().post(
            f"{self.base_url}{path}", json=body, timeout=60, headers=self.headers | {"Idempotency-Key": key}
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self._session().get(f"{self.base_url}{path}", params=params, timeout=60, headers=self.headers)


def _entries(client: Client, account_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(f"/v1/accounts/{account_id}/entries", limit=200, **({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        items.extend(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if not cursor:
            return items


def _fresh_tenant_key(stack: Any) -> str:
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    made = requests.post(
        f"{stack.base_url}/admin/v1/tenants",
        json={"name": "Concurrency", "jurisdictions": ["FR"]},
        headers=admin | {"Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    assert made.status_code == 201, made.text
    issued = requests.post(
        f"{stack.base_url}/admin/v1/tenants/{made.json()['id']}/api-keys",
        json={},
        headers=admin | {"Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["api_key"])


def test_concurrent_transfers_keep_every_invariant(stack: Any) -> None:
    client = Client(stack.base_url, _fresh_tenant_key(stack))
    user = client.post(
        "/v1/users",
        {"external_ref": f"conc-{uuid.uuid4().hex}", "full_name": "Con Current", "country": "FR"},
        str(uuid.uuid4()),
    )
    assert user.status_code == 201, user.text
    accounts = []
    for _ in range(ACCOUNTS):
        made = client.post("/v1/accounts", {"user_id": user.json()["id"], "currency": "EUR"}, str(uuid.uuid4()))
        assert made.status_code == 201, made.text
        accounts.append(made.json()["id"])
        funded = client.post(
            "/v1/fundings",
            {"account_id": accounts[-1], "amount_minor": FUNDING_MINOR, "currency": "EUR"},
            str(uuid.uuid4()),
        )
        assert funded.status_code == 201, funded.text

    accepted: dict[str, tuple[dict[str, Any], str]] = {}  # idempotency key -> (body, txn id)
    sent: dict[str, dict[str, Any]] = {}
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[str, dict[str, Any]]] = []
        for _ in range(TRANSFERS_PER_THREAD):
            roll = rng.random()
            if mine and roll < 0.15:  # exact duplicate of an earlier request of this thread
                key, body = rng.choice(mine)
            elif mine and roll < 0.20:  # same key, different payload
                key, body = rng.choice(mine)
                body = body | {"amount_minor": body["amount_minor"] + 1}
            else:
                src, dst = rng.sample(accounts, 2)
                key = str(uuid.uuid4())
                body = {
                    "from_account_id": src,
                    "to_account_id": dst,
                    "amount_minor": rng.randint(1, 3_000),
                    "currency": "EUR",
                }
                mine.append((key, body))
            response = client.post("/v1/transfers", body, key)
            with lock:
                _record(response, key, body, accepted, sent, outcomes)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))

    assert outcomes["created"] > 0 and outcomes["insufficient_funds"] >= 0
    assert outcomes["replayed"] > 0 and outcomes["reused"] > 0, outcomes
    assert set(outcomes) <= {"created", "replayed", "reused", "insufficient_funds", "in_progress"}, outcomes

    # exactly one transaction per accepted key, and it is the accepted one
    txn_ids = [txn_id for _, txn_id in accepted.values()]
    assert len(txn_ids) == len(set(txn_ids))
    for body, txn_id in accepted.values():
        txn = client.get(f"/v1/transactions/{txn_id}").json()
        assert txn["status"] == "SETTLED" and txn["amount_minor"] == body["amount_minor"]
        assert sum(leg["amount_minor"] for leg in txn["legs"]) == 0  # zero-sum per transaction (one currency)

    # balances derive from entries; none below zero; replays posted nothing (balances match accepted transfers only)
    expected = defaultdict(lambda: FUNDING_MINOR)
    for body, _ in accepted.values():
        expected[body["from_account_id"]] -= body["amount_minor"]
        expected[body["to_account_id"]] += body["amount_minor"]
    total = 0
    for account_id in accounts:
        balance = client.get(f"/v1/accounts/{account_id}").json()["balance"]
        entries = _entries(client, account_id)
        assert balance["posted_minor"] == sum(e["amount_minor"] for e in entries)
        assert balance["available_minor"] == balance["posted_minor"] == expected[account_id]
        assert balance["available_minor"] >= 0
        entry_txns = [e["txn_id"] for e in entries]
        assert len(entry_txns) == len(set(entry_txns))  # no transaction touched an account twice
        total += balance["posted_minor"]
    clearing = client.get("/v1/accounts/sys_funding_clearing_eur").json()["balance"]["posted_minor"]
    assert clearing == -FUNDING_MINOR * ACCOUNTS  # a fresh tenant: only this test's fundings
    assert total + clearing == 0  # zero-sum per currency across the tenant, system account included


def _record(
    response: requests.Response,
    key: str,
    body: dict[str, Any],
    accepted: dict[str, Any],
    sent: dict[str, dict[str, Any]],
    outcomes: Counter[str],
) -> None:
    status = response.status_code
    assert status < 500, response.text
    assert response.headers.get("X-Correlation-Id")
    if status == 201:
        txn = response.json()
        if key in accepted:
            assert response.headers.get("Idempotency-Replayed") == "true"
            assert accepted[key][1] == txn["id"] and accepted[key][0] == body
            outcomes["replayed"] += 1
        else:
            assert response.headers.get("Idempotency-Replayed") != "true"
            accepted[key] = (body, txn["id"])
            outcomes["created"] += 1
    elif status == 409:
        code = response.json()["code"]
        assert code in {"idempotency_key_reused", "idempotency_in_progress"}, response.text
        outcomes["reused" if code == "idempotency_key_reused" else "in_progress"] += 1
        if code == "idempotency_key_reused":
            assert sent.get(key) != body
    elif status == 422:
        assert response.json()["code"] == "insufficient_funds", response.text
        outcomes["insufficient_funds"] += 1
    else:
        raise AssertionError(f"unexpected {status}: {response.text}")
    sent.setdefault(key, body)


CAPTURE_THREADS = 12
HOLD_MINOR = 1_000
CAPTURE_MINOR = 100


def test_concurrent_captures_and_voids_never_exceed_the_hold(stack: Any) -> None:
    """Racing captures (and voids) of one hold over real HTTP: each step lands in its own sequence slot or is refused,
    so what is captured plus what is released is exactly the hold, and balances follow the ledger."""
    client = Client(stack.base_url, _fresh_tenant_key(stack))
    user = client.post(
        "/v1/users",
        {"external_ref": f"cap-{uuid.uuid4().hex}", "full_name": "Cap Ture", "country": "FR"},
        str(uuid.uuid4()),
    ).json()["id"]
    payer, payee = (
        client.post("/v1/accounts", {"user_id": user, "currency": "EUR"}, str(uuid.uuid4())).json()["id"]
        for _ in range(2)
    )
    assert client.post(
        "/v1/fundings", {"account_id": payer, "amount_minor": 5_000, "currency": "EUR"}, str(uuid.uuid4())
    ).ok
    hold = client.post(
        "/v1/transfers",
        {
            "from_account_id": payer,
            "to_account_id": payee,
            "amount_minor": HOLD_MINOR,
            "currency": "EUR",
            "capture": "manual",
        },
        str(uuid.uuid4()),
    )
    assert hold.status_code == 201, hold.text
    txn_id = hold.json()["id"]

    def race(index: int) -> tuple[str, int, str]:
        action = "void" if index % 6 == 5 else "capture"
        body = {"amount_minor": CAPTURE_MINOR} if action == "capture" else {"amount_minor": 50}
        response = client.post(f"/v1/transactions/{txn_id}/{action}", body, str(uuid.uuid4()))
        assert response.status_code < 500, response.text
        return action, response.status_code, response.json().get("code", "")

    with ThreadPoolExecutor(CAPTURE_THREADS) as pool:
        results = list(pool.map(race, range(CAPTURE_THREADS * 2)))
    assert {(status, code) for _, status, code in results} <= {
        (200, ""),
        (409, "invalid_state_transition"),
        (409, "concurrency_conflict"),
        (422, "validation_error"),
    }, results
    captures = sum(1 for action, status, _ in results if action == "capture" and status == 200)
    voids = sum(1 for action, status, _ in results if action == "void" and status == 200)

    txn = client.get(f"/v1/transactions/{txn_id}").json()
    assert txn["captured_minor"] == captures * CAPTURE_MINOR
    assert txn["released_minor"] == voids * 50
    assert txn["captured_minor"] + txn["released_minor"] + txn["held_minor"] == HOLD_MINOR
    assert [step["seq"] for step in txn["lifecycle"]] == list(range(len(txn["lifecycle"])))  # no slot twice
    payer_balance = client.get(f"/v1/accounts/{payer}").json()["balance"]
    assert payer_balance["posted_minor"] == 5_000 - txn["captured_minor"]
    assert payer_balance["pending_out_minor"] == txn["held_minor"]
    assert payer_balance["available_minor"] == payer_balance["posted_minor"] - payer_balance["pending_out_minor"]
    assert client.get(f"/v1/accounts/{payee}").json()["balance"]["posted_minor"] == txn["captured_minor"]
