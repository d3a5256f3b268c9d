"""FX quotes over HTTP: a firm provider quote, stored with its expiry, executed by a conversion within its validity and
exactly once (even under concurrency), for the quoted accounts and amount only; expired, reused and mismatching
quotes and provider failures (the sandbox's on-demand scenarios) post nothing."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture
def world(call: Any, admin_key: str) -> tuple[Tenant, str, str]:
    """A tenant and one user with an EUR account (funded 500.00) and a JPY account."""
    tenant = new_tenant(call, admin_key, "FX quotes")
    user = new_user(call, tenant)
    eur, jpy = new_account(call, tenant, user, "EUR"), new_account(call, tenant, user, "JPY")
    fund(call, tenant, eur, 50_000)
    return tenant, eur, jpy


def scenario_wallets(call: Any, tenant: Tenant, scenario: str) -> tuple[str, str]:
    """An EUR (funded 500.00) and a JPY account of a new user whose external_ref carries the sandbox FX provider's
    scenario marker `fx_<scenario>` (like the KYC sandbox's `kyc_<scenario>`)."""
    made = call(
        "POST",
        "/v1/users",
        key=tenant.key,
        headers=idem(),
        json={"external_ref": f"{uuid.uuid4().hex}+fx_{scenario}", "full_name": "Ada Lovelace", "country": "FR"},
    )
    assert made.status == 201, made.json()
    eur, jpy = new_account(call, tenant, made.json()["id"], "EUR"), new_account(call, tenant, made.json()["id"], "JPY")
    fund(call, tenant, eur, 50_000)
    return eur, jpy


def body(eur: str, jpy: str, amount_minor: int, **extra: Any) -> dict[str, Any]:
    return {"account_id": eur, "to_account_id": jpy, "amount_minor": amount_minor, "currency": "EUR"} | extra


def quote(call: Any, tenant: Tenant, eur: str, jpy: str, amount_minor: int) -> Any:
    return call("POST", "/v1/fx/quotes", key=tenant.key, headers=idem(), json=body(eur, jpy, amount_minor))


def convert(call: Any, tenant: Tenant, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return call("POST", "/v1/fx/conversions", key=tenant.key, headers=headers or idem(), json=payload)


def conversions(tenant: Tenant) -> list[dict[str, Any]]:
    return [i for i in ledger_items(tenant.id) if i["sk"] == "TXN" and i["type"] == "fx_conversion"]


def posted(call: Any, tenant: Tenant, *accounts: str) -> tuple[int, ...]:
    return tuple(balance(call, tenant, account)["posted_minor"] for account in accounts)


def test_a_quote_is_executed_within_its_validity_once(call: Any, world: tuple[Tenant, str, str]) -> None:
    tenant, eur, jpy = world
    key = {"Idempotency-Key": str(uuid.uuid4())}
    made = call("POST", "/v1/fx/quotes", key=tenant.key, headers=key, json=body(eur, jpy, 1_234))
    assert made.status == 201, made.json()
    offer = made.json()
    assert (offer["status"], offer["pair"], offer["rate"]) == ("OPEN", "EUR/JPY", "162.35")
    assert (offer["source_amount_minor"], offer["target_amount_minor"], offer["target_amount"]) == (
        1_234,
        2_003,
        "2003",
    )
    assert offer["provider"]["name"] == "sandbox_fx" and offer["expires_at"] > offer["created_at"]
    replayed = call("POST", "/v1/fx/quotes", key=tenant.key, headers=key, json=body(eur, jpy, 1_234))
    assert replayed.headers["Idempotency-Replayed"] == "true" and replayed.json() == offer
    assert posted(call, tenant, eur, jpy) == (50_000, 0)  # a quote moves nothing

    conversion_key = {"Idempotency-Key": str(uuid.uuid4())}
    done = convert(call, tenant, body(eur, jpy, 1_234, quote_id=offer["id"]), conversion_key)
    assert done.status == 201, done.json()
    txn = done.json()
    assert (txn["type"], txn["status"]) == ("fx_conversion", "SETTLED")
    assert txn["fx"]["quote_id"] == offer["provider"]["quote_id"] and txn["fx"]["rate"] == "162.35"
    assert txn["fx"]["quote_expires_at"] == offer["expires_at"] and txn["fx"]["target_amount_minor"] == 2_003
    assert txn["provider"]["name"] == "sandbox_fx" and txn["provider"]["reference"].startswith("sbxfxt_")
    assert all(leg["fx"] == txn["fx"] for leg in txn["legs"])  # attribution on every leg, as without a quote
    assert posted(call, tenant, eur, jpy) == (50_000 - 1_234, 2_003)
    shown = call("GET", f"/v1/fx/quotes/{offer['id']}", key=tenant.key).json()
    assert (shown["status"], shown["txn_id"]) == ("USED", txn["id"])

    again = convert(call, tenant, body(eur, jpy, 1_234, quote_id=offer["id"]), conversion_key)
    assert again.status == 201 and again.headers["Idempotency-Replayed"] == "true" and again.json() == txn
    reused = convert(call, tenant, body(eur, jpy, 1_234, quote_id=offer["id"]))
    assert (reused.status, reused.json()["code"]) == (409, "quote_already_used")
    assert posted(call, tenant, eur, jpy) == (50_000 - 1_234, 2_003) and len(conversions(tenant)) == 1

    unquoted = convert(call, tenant, body(eur, jpy, 1_234))  # without quote_id: priced and executed at once
    assert unquoted.status == 201 and unquoted.json()["fx"]["quote_id"] != offer["provider"]["quote_id"]


def test_an_expired_quote_is_refused_and_posts_nothing(call: Any, world: tuple[Tenant, str, str]) -> None:
    tenant, _, _ = world
    eur, jpy = scenario_wallets(call, tenant, "short_quote")  # the sandbox's quotes last one second
    made = quote(call, tenant, eur, jpy, 1_000)
    assert made.status == 201, made.json()
    offer = made.json()
    late_eur, late_jpy = scenario_wallets(call, tenant, "execution_late")  # executions reach it after its cut-off
    late = quote(call, tenant, late_eur, late_jpy, 1_000).json()
    time.sleep(max(0.0, (datetime.fromisoformat(offer["expires_at"]) - datetime.now(UTC)).total_seconds()) + 0.05)

    expired = convert(call, tenant, body(eur, jpy, 1_000, quote_id=offer["id"]))
    assert (expired.status, expired.json()["code"]) == (422, "quote_expired")
    assert call("GET", f"/v1/fx/quotes/{offer['id']}", key=tenant.key).json()["status"] == "EXPIRED"
    refused = convert(call, tenant, body(late_eur, late_jpy, 1_000, quote_id=late["id"]))
    assert (refused.status, refused.json()["code"]) == (422, "quote_expired")
    assert "sandbox_fx refused" in refused.json()["detail"]  # the provider's refusal, not the kernel's check
    assert posted(call, tenant, eur, jpy, late_eur, late_jpy) == (50_000, 0, 50_000, 0) and not conversions(tenant)
    assert call("GET", "/v1/accounts/sys_fx_position_eur", key=tenant.key).status == 404  # nothing touched them


def test_a_conversion_must_match_its_quote(call: Any, world: tuple[Tenant, str, str]) -> None:
    tenant, eur, jpy = world
    offer = quote(call, tenant, eur, jpy, 5_000).json()
    other_jpy = new_account(call, tenant, balance_user(call, tenant, eur), "JPY")
    cases = [
        (body(eur, jpy, 5_001, quote_id=offer["id"]), 422, "quote_mismatch", ["amount_minor"]),
        (body(eur, other_jpy, 5_000, quote_id=offer["id"]), 422, "quote_mismatch", ["to_account_id"]),
        (body(eur, jpy, 5_000, quote_id=offer["id"], currency="JPY"), 422, "quote_mismatch", ["currency"]),
        (body(eur, jpy, 5_000, quote_id="fxq_unknown"), 404, "not_found", None),
    ]
    for payload, status, code, fields in cases:
        refused = convert(call, tenant, payload)
        assert (refused.status, refused.json()["code"]) == (status, code), refused.json()
        if fields:
            assert [e["loc"][-1] for e in refused.json()["errors"]] == fields
    assert posted(call, tenant, eur, jpy) == (50_000, 0) and not conversions(tenant)
    assert convert(call, tenant, body(eur, jpy, 5_000, quote_id=offer["id"])).status == 201  # still usable


def balance_user(call: Any, tenant: Tenant, account_id: str) -> str:
    return str(call("GET", f"/v1/accounts/{account_id}", key=tenant.key).json()["user_id"])


def test_provider_failures_post_nothing(call: Any, world: tuple[Tenant, str, str]) -> None:
    tenant, eur, jpy = world
    down_eur, down_jpy = scenario_wallets(call, tenant, "quote_down")
    down = quote(call, tenant, down_eur, down_jpy, 1_000)
    assert (down.status, down.json()["code"]) == (503, "provider_unavailable")

    failing_eur, failing_jpy = scenario_wallets(call, tenant, "execution_fails")
    offer = quote(call, tenant, failing_eur, failing_jpy, 1_000).json()
    failed = convert(call, tenant, body(failing_eur, failing_jpy, 1_000, quote_id=offer["id"]))
    assert (failed.status, failed.json()["code"]) == (503, "provider_unavailable")
    unquoted = convert(call, tenant, body(failing_eur, failing_jpy, 1_000))
    assert (unquoted.status, unquoted.json()["code"]) == (503, "provider_unavailable")
    assert call("GET", f"/v1/fx/quotes/{offer['id']}", key=tenant.key).json()["status"] == "OPEN"

    poor = quote(call, tenant, eur, jpy, 60_000)  # more than the account holds: refused before the provider books
    assert poor.status == 201
    refused = convert(call, tenant, body(eur, jpy, 60_000, quote_id=poor.json()["id"]))
    assert (refused.status, refused.json()["code"]) == (422, "insufficient_funds")
    assert posted(call, tenant, failing_eur, failing_jpy, eur, jpy) == (50_000, 0, 50_000, 0)
    assert not conversions(tenant)


def test_concurrent_conversions_use_a_quote_once(
    call: Any, world: tuple[Tenant, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six conversions of one quote read it as unused together (held at a barrier until all have), so only the guard
    in the posting's own TransactWriteItems can stop five of them."""
    from moncore.domain.context import Caller
    from moncore.domain.errors import DomainError
    from moncore.http.idempotency import request_identity
    from moncore.ledger.fx import FxService
    from moncore.store import offers

    tenant, eur, jpy = world
    workers = 6
    offer = quote(call, tenant, eur, jpy, 3_000).json()
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
    service = FxService()
    caller = Caller(tenant_id=tenant.id, actor=f"key:{tenant.key_id}", role="tenant", correlation_id="fx-race")
    payload = body(eur, jpy, 3_000, quote_id=offer["id"])

    def attempt(_: int) -> Any:
        try:
            request = request_identity(uuid.uuid4().hex, "POST /v1/fx/conversions", payload)
            return service.convert(caller, request, **payload).body
        except DomainError as refused:
            return refused

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(attempt, range(workers)))
    done = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if not isinstance(o, dict)]
    assert len(done) == 1, outcomes
    assert all((r.status, r.code) == (409, "quote_already_used") for r in refused), refused
    assert posted(call, tenant, eur, jpy) == (50_000 - 3_000, 4_870) and len(conversions(tenant)) == 1


def test_quotes_are_gated_by_the_fx_capability(call: Any, admin_key: str, world: tuple[Tenant, str, str]) -> None:
    tenant, eur, jpy = world
    offer = quote(call, tenant, eur, jpy, 1_000).json()
    off = call(
        "POST",
        f"/admin/v1/tenants/{tenant.id}/capabilities",
        key=admin_key,
        headers=idem(),
        json={"capability": "fx", "mode": "disabled"},
    )
    assert off.status == 200, off.json()
    for refused in (
        quote(call, tenant, eur, jpy, 1_000),
        convert(call, tenant, body(eur, jpy, 1_000, quote_id=offer["id"])),
    ):
        assert (refused.status, refused.json()["code"]) == (403, "capability_disabled")
    assert posted(call, tenant, eur, jpy) == (50_000, 0)
