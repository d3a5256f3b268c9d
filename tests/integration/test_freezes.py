"""Freezes through the admin API (issue 4 part 6): a frozen user or account can neither send nor receive, enforced by
ConditionChecks inside the posting transaction, so a posting racing a freeze cannot slip through; releases of holds
still work; every freeze and unfreeze is audited."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr

from tests.integration.helpers import Tenant, balance, fund, idem, ledger_items, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


@pytest.fixture(scope="module")
def keys(local_backend: Any) -> dict[str, str]:
    from infra.local_stack import create_admin_key

    return {
        role: create_admin_key(name=f"freeze-{role}", role=role)[1]
        for role in ("admin", "operator", "compliance_officer", "viewer")
    }


@dataclass
class World:
    tenant: Tenant
    alice: str  # user
    bob: str  # user
    a1: str  # alice's accounts, a1 funded
    a2: str
    b1: str  # bob's account, funded


@pytest.fixture
def world(call: Any, admin_key: str) -> World:
    tenant = new_tenant(call, admin_key, "Freezes")
    alice, bob = new_user(call, tenant), new_user(call, tenant)
    a1, a2, b1 = new_account(call, tenant, alice), new_account(call, tenant, alice), new_account(call, tenant, bob)
    fund(call, tenant, a1, 10_000)
    fund(call, tenant, b1, 10_000)
    return World(tenant, alice, bob, a1, a2, b1)


def transfer(call: Any, world: World, source: str, target: str, amount_minor: int = 100, **extra: Any) -> Any:
    body = {"from_account_id": source, "to_account_id": target, "amount_minor": amount_minor, "currency": "EUR"}
    return call("POST", "/v1/transfers", key=world.tenant.key, json=body | extra, headers=idem())


def admin(call: Any, key: str, path: str, reason: str = "suspicious activity") -> Any:
    return call("POST", path, key=key, json={"reason": reason})


def user_path(world: World, user_id: str, verb: str) -> str:
    return f"/admin/v1/users/{world.tenant.id}/{user_id}/{verb}"


def account_path(world: World, account_id: str, verb: str) -> str:
    return f"/admin/v1/accounts/{world.tenant.id}/{account_id}/{verb}"


def frozen_refusal(response: Any) -> bool:
    return bool(response.status == 422 and response.json()["code"] == "account_frozen")


def audit_events(tenant_id: str, *actions: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(os.environ["MONCORE_AUDIT_TABLE"])
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "ConsistentRead": True,
        "FilterExpression": Attr("tenant_id").eq(tenant_id) & Attr("action").is_in(list(actions)),
    }
    while True:
        page = table.scan(**kwargs)
        found.extend(item | {"payload": json.loads(str(item["payload"]))} for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return sorted(found, key=lambda item: str(item["sk"]))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_frozen_user_can_neither_send_nor_receive_until_unfrozen(
    call: Any, keys: dict[str, str], world: World
) -> None:
    before_items = len(ledger_items(world.tenant.id))
    frozen = admin(call, keys["compliance_officer"], user_path(world, world.alice, "freeze"), "sanctions match")
    assert frozen.status == 200, frozen.json()
    assert frozen.json()["status"] == "frozen" and frozen.json()["reason"] == "sanctions match"
    assert call("GET", f"/v1/users/{world.alice}", key=world.tenant.key).json()["status"] == "frozen"

    refusals = [
        transfer(call, world, world.a1, world.b1),  # send
        transfer(call, world, world.b1, world.a1),  # receive
        transfer(call, world, world.a1, world.a2),  # between the frozen user's own accounts
        transfer(call, world, world.a1, world.b1, capture="manual"),  # a hold is money movement too
        call(
            "POST",
            "/v1/fundings",
            key=world.tenant.key,
            headers=idem(),
            json={"account_id": world.a2, "amount_minor": 500, "currency": "EUR"},
        ),
    ]
    assert all(frozen_refusal(r) for r in refusals), [r.json() for r in refusals]
    assert "frozen" in refusals[0].json()["detail"]
    assert len(ledger_items(world.tenant.id)) == before_items  # nothing posted
    assert balance(call, world.tenant, world.a1)["available_minor"] == 10_000
    assert balance(call, world.tenant, world.b1)["available_minor"] == 10_000

    # The account itself is ACTIVE: only the user is frozen. Unfreezing the user restores both directions.
    assert call("GET", f"/v1/accounts/{world.a1}", key=world.tenant.key).json()["status"] == "active"
    unfrozen = admin(call, keys["compliance_officer"], user_path(world, world.alice, "unfreeze"), "false positive")
    assert unfrozen.status == 200 and unfrozen.json()["status"] == "active"
    assert transfer(call, world, world.a1, world.b1, 300).status == 201
    assert transfer(call, world, world.b1, world.a1, 100).status == 201
    assert balance(call, world.tenant, world.a1)["available_minor"] == 9_800

    events = audit_events(world.tenant.id, "user.frozen", "user.unfrozen")
    assert [(e["action"], e["payload"]["reason"], e["payload"]["user_id"]) for e in events] == [
        ("user.frozen", "sanctions match", world.alice),
        ("user.unfrozen", "false positive", world.alice),
    ]
    assert all(e["actor"].startswith("key:") and e["payload"]["changed_at"] for e in events)
    users = boto3.resource("dynamodb").Table(os.environ["MONCORE_USERS_TABLE"])
    stored = users.get_item(Key={"pk": f"{world.tenant.id}#{world.alice}"}, ConsistentRead=True)["Item"]
    assert (stored["status"], stored["status_reason"]) == ("ACTIVE", "false positive")


def test_a_frozen_account_blocks_only_that_account(call: Any, keys: dict[str, str], world: World) -> None:
    frozen = admin(call, keys["operator"], account_path(world, world.a1, "freeze"))
    assert frozen.status == 200 and frozen.json()["account_id"] == world.a1
    assert call("GET", f"/v1/accounts/{world.a1}", key=world.tenant.key).json()["status"] == "frozen"
    assert frozen_refusal(transfer(call, world, world.a1, world.b1))
    assert frozen_refusal(transfer(call, world, world.b1, world.a1))
    # The user's other account still works.
    assert transfer(call, world, world.b1, world.a2, 700).status == 201
    assert transfer(call, world, world.a2, world.b1, 200).status == 201
    assert balance(call, world.tenant, world.a1)["posted_minor"] == 10_000
    assert admin(call, keys["admin"], account_path(world, world.a1, "unfreeze")).status == 200
    assert transfer(call, world, world.a1, world.b1).status == 201
    actions = [e["action"] for e in audit_events(world.tenant.id, "account.frozen", "account.unfrozen")]
    assert actions == ["account.frozen", "account.unfrozen"]


@pytest.mark.parametrize("subject", ["user", "account"])
def test_releasing_a_hold_still_works_when_frozen(call: Any, keys: dict[str, str], world: World, subject: str) -> None:
    """A void gives the payer's money back: allowed on a frozen user or account. A capture moves money: refused."""
    holds = [transfer(call, world, world.a1, world.b1, 1_500, capture="manual") for _ in range(2)]
    assert all(h.status == 201 for h in holds), [h.json() for h in holds]
    assert balance(call, world.tenant, world.a1)["available_minor"] == 7_000
    path = user_path(world, world.alice, "freeze") if subject == "user" else account_path(world, world.a1, "freeze")
    assert admin(call, keys["admin"], path).status == 200

    voided = call(
        "POST", f"/v1/transactions/{holds[0].json()['id']}/void", key=world.tenant.key, json={}, headers=idem()
    )
    assert voided.status == 200 and voided.json()["status"] == "REVERSED", voided.json()
    assert balance(call, world.tenant, world.a1)["available_minor"] == 8_500
    captured = call(
        "POST", f"/v1/transactions/{holds[1].json()['id']}/capture", key=world.tenant.key, json={}, headers=idem()
    )
    assert frozen_refusal(captured), captured.json()
    assert balance(call, world.tenant, world.b1)["posted_minor"] == 10_000


def test_roles_and_transitions(call: Any, keys: dict[str, str], world: World) -> None:
    freeze = user_path(world, world.alice, "freeze")
    unfreeze = user_path(world, world.alice, "unfreeze")
    assert admin(call, keys["viewer"], freeze).status == 403
    not_frozen = admin(call, keys["compliance_officer"], unfreeze)
    assert not_frozen.status == 409 and not_frozen.json()["code"] == "invalid_state_transition"
    assert admin(call, keys["operator"], freeze).status == 200  # operators may freeze...
    refused = admin(call, keys["operator"], unfreeze)
    assert refused.status == 403 and refused.json()["code"] == "forbidden"  # ...but never lift a freeze
    again = admin(call, keys["admin"], freeze)
    assert again.status == 409 and again.json()["code"] == "invalid_state_transition"
    assert admin(call, keys["viewer"], unfreeze).status == 403
    assert admin(call, keys["compliance_officer"], unfreeze).status == 200
    assert admin(call, keys["admin"], unfreeze).status == 409
    assert len(audit_events(world.tenant.id, "user.frozen", "user.unfrozen")) == 2  # refusals change nothing

    missing_reason = call("POST", freeze, key=keys["admin"], json={})
    assert missing_reason.status == 422
    assert admin(call, keys["admin"], user_path(world, "usr_missing", "freeze")).status == 404
    assert admin(call, keys["admin"], f"/admin/v1/users/ten_other/{world.alice}/freeze").status == 404
    assert admin(call, keys["admin"], account_path(world, "sys_funding_clearing_eur", "freeze")).status == 422
    assert call("POST", freeze, key=world.tenant.key, json={"reason": "x"}).status in (401, 403)


@pytest.mark.parametrize("subject", ["user", "account"])
def test_no_posting_lands_after_the_freeze_returns(call: Any, keys: dict[str, str], world: World, subject: str) -> None:
    """Threads post transfers both ways between a1 and b1 while another freezes alice (or a1). Every posting that
    starts after the freeze call returned must be refused with 422 account_frozen, and the ledger holds no entry of
    a1 recorded after that moment; postings before it land normally; no 5xx; balances match the accepted postings.

    The boundary is the moment the freeze call *returned* (its write committed), not the freeze's own `changed_at`:
    a posting stamped a little after `changed_at` may legitimately commit before the freeze's write does."""
    threads, after_freeze_each = 4, 4
    results: list[tuple[str, str, int, Any]] = []  # (started_at, direction, status, body)
    lock = threading.Lock()
    freeze_returned: list[str] = []
    freeze_answers: list[Any] = []
    posted_before = threading.Event()
    stop = threading.Event()

    def stamp() -> str:
        from moncore.domain.clock import now_rfc3339

        return now_rfc3339()

    def poster(index: int) -> None:
        done_after = 0
        while not stop.is_set() and done_after < after_freeze_each:
            forward = (index + len(results)) % 2 == 0
            source, target = (world.a1, world.b1) if forward else (world.b1, world.a1)
            started = stamp()
            got = transfer(call, world, source, target, 10)
            with lock:
                results.append((started, "a->b" if forward else "b->a", got.status, got.json()))
                if len(results) >= 2 * threads:
                    posted_before.set()
            if freeze_returned and started > freeze_returned[0]:
                done_after += 1

    def freezer() -> None:
        posted_before.wait(timeout=30)
        path = user_path(world, world.alice, "freeze") if subject == "user" else account_path(world, world.a1, "freeze")
        got = admin(call, keys["admin"], path, "racing freeze")
        freeze_answers.append(got)
        if got.status == 200:
            freeze_returned.append(stamp())
        else:
            stop.set()  # the assertions below report the answer

    workers = [threading.Thread(target=poster, args=(i,)) for i in range(threads)] + [threading.Thread(target=freezer)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
    stop.set()
    assert freeze_returned, [a.json() for a in freeze_answers]
    boundary = freeze_returned[0]

    assert all(status in (201, 422) for _, _, status, _ in results), [r[2:] for r in results if r[2] not in (201, 422)]
    refused = [r for r in results if r[2] == 422]
    assert all(r[3]["code"] == "account_frozen" for r in refused), [r[3] for r in refused]
    after = [r for r in results if r[0] > boundary]
    assert len(after) >= threads * after_freeze_each
    assert all(r[2] == 422 for r in after), [r for r in after if r[2] != 422]
    accepted = [r for r in results if r[2] == 201]
    assert len(accepted) >= 2 * threads  # the race had postings on both sides of the freeze

    # The ledger, read raw: exactly the accepted transfers touch a1, none recorded after the freeze returned.
    legs = [
        item
        for item in ledger_items(world.tenant.id)
        if item["sk"].startswith("LEG#") and item.get("account_id") == world.a1 and item["type"] == "transfer"
    ]
    assert sorted(leg["txn_id"] for leg in legs) == sorted(r[3]["id"] for r in accepted)
    assert all(leg["recorded_at"] < boundary for leg in legs)
    sent = sum(10 for r in accepted if r[1] == "a->b")
    received = sum(10 for r in accepted if r[1] == "b->a")
    assert balance(call, world.tenant, world.a1)["posted_minor"] == 10_000 - sent + received
    assert balance(call, world.tenant, world.b1)["posted_minor"] == 10_000 + sent - received
