"""Hot accounts (docs/hot-accounts.md): a balance spread over N shard items, chosen per posting, summed on read.

The integration stack runs with the template's default HotAccountShards, so every tenant system account here is
sharded. Floored sharded accounts do not exist in production yet (system accounts have no floor, user accounts have
one shard), so the overdraft tests drive `store.ledger.post()` directly with a USER AccountRef that has 4 shards: the
posting path only ever sees the ref, which is exactly what a floored hot account would give it.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from tests.integration.helpers import (
    Tenant,
    balance,
    fund,
    new_account,
    new_tenant,
    new_user,
    table_items,
)

pytestmark = pytest.mark.xdist_group("integration")

CLEARING = "sys_funding_clearing_eur"
USER_SHARDS = 4


@pytest.fixture
def tenant(call: Any, admin_key: str) -> Tenant:
    return new_tenant(call, admin_key)


# ------------------------------------------------------------------ raw reads (never through the code under test)
def _table(env_var: str) -> Any:
    return boto3.resource("dynamodb").Table(os.environ[env_var])


def shard_items(tenant_id: str, account_id: str, shards: int) -> dict[int, dict[str, Any]]:
    """The account's balance items by shard (those that exist), read by key straight from the Balances table."""
    table = _table("MONCORE_BALANCES_TABLE")
    pks = {
        shard: f"{tenant_id}#{account_id}" if shard == 0 else f"{tenant_id}#{account_id}#{shard}"
        for shard in range(shards)
    }
    request: dict[str, Any] = {table.name: {"Keys": [{"pk": pk} for pk in pks.values()], "ConsistentRead": True}}
    items: list[dict[str, Any]] = []
    while request:
        page = table.meta.client.batch_get_item(RequestItems=request)
        items += page["Responses"].get(table.name, [])
        request = page.get("UnprocessedKeys") or {}
    by_shard = {int(item["shard"]): item for item in items}
    for shard, item in by_shard.items():
        assert item["pk"] == pks[shard] and item["account_id"] == account_id, item
        assert item["available_minor"] == item["posted_minor"] - item["pending_out_minor"], item
    return by_shard


def available_by_shard(tenant_id: str, account_id: str, shards: int) -> dict[int, int]:
    return {shard: int(item["available_minor"]) for shard, item in shard_items(tenant_id, account_id, shards).items()}


def account_legs(tenant_id: str, account_id: str) -> list[dict[str, Any]]:
    """Every leg of the account, from the ledger's by_account index."""
    table = _table("MONCORE_LEDGER_TABLE")
    kwargs: dict[str, Any] = {
        "IndexName": "by_account",
        "KeyConditionExpression": Key("account_pk").eq(f"{tenant_id}#{account_id}"),
    }
    legs: list[dict[str, Any]] = []
    while True:
        page = table.query(**kwargs)
        legs += page["Items"]
        if "LastEvaluatedKey" not in page:
            return legs
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def first_leg(tenant_id: str, txn_id: str) -> dict[str, Any]:
    """Leg 1 of event 1 of the transaction (settled_pair puts the debit first)."""
    got = _table("MONCORE_LEDGER_TABLE").get_item(
        Key={"pk": f"{tenant_id}#{txn_id}", "sk": "LEG#0001#01"}, ConsistentRead=True
    )
    return dict(got["Item"])


def legs_by_shard(legs: list[dict[str, Any]]) -> dict[int, int]:
    totals: Counter[int] = Counter()
    for leg in legs:
        totals[int(leg["shard"])] += int(leg["leg_amount_minor"])
    return dict(totals)


def assert_shards_derive_from_legs(by_shard: dict[int, dict[str, Any]], legs: list[dict[str, Any]]) -> None:
    """Each leg records its shard and each shard item is the sum of exactly those legs (derivation per shard)."""
    totals = legs_by_shard(legs)
    assert set(totals) <= set(by_shard), "a leg names a shard that has no balance item"
    assert {shard: int(item["posted_minor"]) for shard, item in by_shard.items()} == {
        shard: totals.get(shard, 0) for shard in by_shard
    }


# ------------------------------------------------------------------ postings built like the services build them
def settled_posting(tenant_id: str, debit: Any, credit: Any, amount_minor: int) -> Any:
    from moncore.domain.audit import audit_event
    from moncore.domain.clock import now_rfc3339
    from moncore.domain.ids import new_id
    from moncore.domain.transactions import Event, EventKind, Transaction, TxnStatus, TxnType, settled_pair
    from moncore.store.ledger import Posting

    now = now_rfc3339()
    txn = Transaction(
        id=new_id("txn"),
        tenant_id=tenant_id,
        type=TxnType.TRANSFER,
        amount_minor=amount_minor,
        currency="EUR",
        created_at=now,
        request_hash="0" * 64,
        correlation_id="hot-accounts",
    )
    event = Event(
        seq=1,
        kind=EventKind.SETTLED,
        status=TxnStatus.SETTLED,
        amount_minor=amount_minor,
        legs=settled_pair(debit, credit, amount_minor),
        recorded_at=now,
        op_id=txn.id,
        request_hash=txn.request_hash,
        actor="test:hot_accounts",
        correlation_id=txn.correlation_id,
    )
    audit = audit_event(
        tenant_id=tenant_id,
        action="transfer.settled",
        actor=event.actor,
        correlation_id=txn.correlation_id,
        subject_id=txn.id,
        payload={"txn_id": txn.id, "amount_minor": amount_minor},
    )
    return Posting(tenant_id=tenant_id, audit=audit, created=(txn,), events=((txn, event),))


def sharded_user_account(call: Any, tenant: Tenant) -> tuple[Any, Any]:
    """(user account ref with USER_SHARDS shards and a floor of 0, the tenant's clearing account ref)."""
    from moncore.domain.settlement import FUNDING_CLEARING
    from moncore.domain.transactions import AccountKind, AccountRef
    from moncore.ledger.service import system_account

    user = new_user(call, tenant)
    account_id = new_account(call, tenant, user)
    ref = AccountRef(account_id, "EUR", AccountKind.USER, user_id=user, shards=USER_SHARDS)
    assert ref.floor_minor == 0
    return ref, system_account(tenant.id, FUNDING_CLEARING, "EUR")


# ------------------------------------------------------------------ tests
def test_fundings_spread_over_clearing_shards_whose_sum_is_the_balance(call: Any, tenant: Tenant) -> None:
    from moncore.config import settings

    shards = settings().hot_account_shards
    assert shards > 1, "the integration stack should run with sharded system accounts (HotAccountShards)"
    user = new_user(call, tenant)
    accounts = [new_account(call, tenant, user) for _ in range(3)]
    amounts = [100 + 7 * i for i in range(24)]
    for i, amount in enumerate(amounts):
        fund(call, tenant, accounts[i % len(accounts)], amount)

    stored = _table("MONCORE_ACCOUNTS_TABLE").get_item(Key={"pk": f"{tenant.id}#{CLEARING}"}, ConsistentRead=True)
    assert stored["Item"]["shards"] == shards and stored["Item"]["kind"] == "system"
    by_shard = shard_items(tenant.id, CLEARING, shards)
    every = [
        i for i in table_items("MONCORE_BALANCES_TABLE") if i["tenant_id"] == tenant.id and i["account_id"] == CLEARING
    ]
    assert len(every) == len(by_shard), "a balance item of the account lies outside its shard range"
    used = [shard for shard, item in by_shard.items() if item["posted_minor"] != 0]
    assert len(used) >= 2, f"24 fundings all landed on shard(s) {used}"

    user_total = sum(balance(call, tenant, account)["posted_minor"] for account in accounts)
    assert user_total == sum(amounts)
    shard_total = sum(item["posted_minor"] for item in by_shard.values())
    assert shard_total == sum(item["available_minor"] for item in by_shard.values()) == -user_total  # zero-sum

    legs = account_legs(tenant.id, CLEARING)
    assert len(legs) == len(amounts)
    assert sum(int(leg["leg_amount_minor"]) for leg in legs) == shard_total
    assert_shards_derive_from_legs(by_shard, legs)

    # The API answers the sum of the shards, with a version counting every posting on any shard.
    clearing = call("GET", f"/v1/accounts/{CLEARING}", key=tenant.key)
    assert clearing.status == 200
    assert clearing.json()["balance"]["posted_minor"] == shard_total
    assert clearing.json()["balance"]["version"] == len(amounts)


def test_floored_sharded_account_refuses_a_debit_no_single_shard_covers(call: Any, tenant: Tenant) -> None:
    """Conservative by design: the floor is checked per shard (a condition on one item), so a debit larger than every
    shard's available is refused even when the sum covers it. It never accepts a debit the sum could not cover."""
    from moncore.domain.errors import InsufficientFunds
    from moncore.store.ledger import post

    account, clearing = sharded_user_account(call, tenant)
    for _ in range(24):
        post(settled_posting(tenant.id, clearing, account, 100))
    before = available_by_shard(tenant.id, account.account_id, USER_SHARDS)
    largest, total = max(before.values()), sum(before.values())
    assert total == 2_400 and largest < total, before  # the credits spread over several shards

    refused = settled_posting(tenant.id, account, clearing, largest + 1)
    with pytest.raises(InsufficientFunds):
        post(refused)
    assert available_by_shard(tenant.id, account.account_id, USER_SHARDS) == before
    assert len(account_legs(tenant.id, account.account_id)) == 24  # nothing of the refused posting was written

    # What one shard holds can be debited in one posting: it lands on that shard and empties it.
    post(settled_posting(tenant.id, account, clearing, largest))
    after = available_by_shard(tenant.id, account.account_id, USER_SHARDS)
    assert sum(after.values()) == total - largest and min(after.values()) >= 0
    assert sorted(after.values()) == sorted([0, *(v for s, v in before.items() if s != _argmax(before))])


def test_concurrent_debits_never_overdraw_a_shard_or_the_sum(call: Any, tenant: Tenant) -> None:
    from moncore.domain.errors import ConcurrencyConflict, InsufficientFunds
    from moncore.store.ledger import post

    account, clearing = sharded_user_account(call, tenant)
    for _ in range(24):
        post(settled_posting(tenant.id, clearing, account, 100))
    funded = sum(available_by_shard(tenant.id, account.account_id, USER_SHARDS).values())
    assert funded == 2_400

    debit_minor, workers, attempts_each = 70, 12, 6  # 72 attempts x 70 = 5040, twice what is there
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(workers)

    def spend() -> None:
        start.wait()
        for _ in range(attempts_each):
            try:
                post(settled_posting(tenant.id, account, clearing, debit_minor))
                outcome = "posted"
            except InsufficientFunds:
                outcome = "refused"
            except ConcurrencyConflict:
                outcome = "busy"
            with lock:
                outcomes[outcome] += 1

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(spend) for _ in range(workers)]:
            future.result()

    by_shard = shard_items(tenant.id, account.account_id, USER_SHARDS)
    for item in by_shard.values():
        assert item["available_minor"] >= 0 and item["posted_minor"] >= 0, item
    assert sum(outcomes.values()) == workers * attempts_each
    assert outcomes["posted"] >= 1 and outcomes["refused"] >= 1, outcomes
    remaining = sum(int(item["available_minor"]) for item in by_shard.values())
    assert remaining == funded - debit_minor * outcomes["posted"] >= 0
    legs = account_legs(tenant.id, account.account_id)
    assert len(legs) == 24 + outcomes["posted"]
    assert_shards_derive_from_legs(by_shard, legs)

    # Once nothing more goes through, no single shard could have covered another debit.
    while True:
        try:
            post(settled_posting(tenant.id, account, clearing, debit_minor))
        except InsufficientFunds:
            break
    assert max(available_by_shard(tenant.id, account.account_id, USER_SHARDS).values()) < debit_minor


def test_floored_debit_goes_to_the_shard_that_can_cover_it(call: Any, tenant: Tenant) -> None:
    """What proves the shard choice respects the floor: each round the whole balance sits on one (random) shard, and
    a debit of all of it must succeed on that very shard. A choice ignoring the floor (random, or always shard 0)
    would be refused by the per-shard condition with probability 3/4 per round, so 8 rounds in a row pass by luck
    with probability (1/4)**8, about 1.5e-5."""
    from moncore.store.ledger import post

    account, clearing = sharded_user_account(call, tenant)
    landed: set[int] = set()
    for round_no in range(8):
        amount = 500 + round_no
        credit = settled_posting(tenant.id, clearing, account, amount)
        post(credit)
        held = {s: v for s, v in available_by_shard(tenant.id, account.account_id, USER_SHARDS).items() if v}
        (shard,) = held  # everything is on the one shard the credit picked
        assert held[shard] == amount
        debit = settled_posting(tenant.id, account, clearing, amount)
        post(debit)  # InsufficientFunds here means the choice ignored where the money is
        leg = first_leg(tenant.id, debit.created[0].id)
        assert leg["account_id"] == account.account_id
        assert int(leg["shard"]) == shard and leg["leg_amount_minor"] == Decimal(-amount)
        assert set(available_by_shard(tenant.id, account.account_id, USER_SHARDS).values()) == {0}
        landed.add(shard)
    assert landed <= set(range(USER_SHARDS))


def _argmax(values: dict[int, int]) -> int:
    return max(values, key=lambda shard: values[shard])
