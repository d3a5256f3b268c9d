"""Settlement on Step Functions (statemachines/settlement.asl.json on moto's engine, tasks in the real handler's worker
processes): signed records per provider and value date, shadow until settlement_finalization is live, idempotent,
verifiable with the public key alone; a failing task ends in the Catch path."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.helpers import Tenant, balance, fund, idem, new_account, new_tenant, new_user

pytestmark = pytest.mark.xdist_group("integration")


def run(local_backend: Any, payload: dict[str, Any], timeout_s: float = 90.0) -> dict[str, Any]:
    client = boto3.client("stepfunctions")
    arn = local_backend.ctx.refs["SettlementStateMachine"]
    execution = client.start_execution(stateMachineArn=arn, name=f"t-{uuid.uuid4().hex}", input=json.dumps(payload))
    deadline = time.monotonic() + timeout_s
    while True:
        described = client.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            return dict(described)
        if time.monotonic() > deadline:
            raise AssertionError(f"execution still running after {timeout_s} s")
        time.sleep(0.2)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def records(tenant: Tenant) -> list[dict[str, Any]]:
    from moncore.settlement.service import SettlementService

    return SettlementService().for_date(tenant.id, today())


def verify(record: dict[str, Any]) -> None:
    """What a regulator does: the public key, the canonical JSON of the document, the signature. No MonCore code."""
    import rfc8785

    der = boto3.client("kms").get_public_key(KeyId=record["signature"]["key_id"])["PublicKey"]
    public_key = serialization.load_der_public_key(der)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    signed = rfc8785.dumps(record["document"])
    public_key.verify(base64.b64decode(record["signature"]["value_b64"]), signed, ec.ECDSA(hashes.SHA256()))


def funded_tenant(call: Any, admin_key: str, amounts: tuple[int, ...]) -> tuple[Tenant, str]:
    tenant = new_tenant(call, admin_key, "Settlement")
    account = new_account(call, tenant, new_user(call, tenant))
    for amount in amounts:
        fund(call, tenant, account, amount)
    return tenant, account


def test_a_shadow_settlement_is_signed_recorded_once_and_posts_nothing(
    call: Any, admin_key: str, local_backend: Any
) -> None:
    tenant, account = funded_tenant(call, admin_key, (10_000, 5_000))
    done = run(local_backend, {"tenant_id": tenant.id, "date": today()})
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"])["settlements"] == 1
    (record,) = records(tenant)
    assert (record["amount_minor"], record["item_count"], record["currency"], record["mode"]) == (
        15_000,
        2,
        "EUR",
        "shadow",
    )
    assert record["posted_txn_id"] is None and record["provider_reference"].endswith(f":EUR:{today()}")
    verify(record)
    tampered = record | {"document": record["document"] | {"amount_minor": 15_001}}
    with pytest.raises(InvalidSignature):
        verify(tampered)

    again = run(local_backend, {"tenant_id": tenant.id, "date": today()})
    assert again["status"] == "SUCCEEDED"
    assert records(tenant) == [record]  # nothing changed: same record, same signature
    assert balance(call, tenant, account)["posted_minor"] == 15_000


def test_a_live_settlement_posts_its_legs_once(
    call: Any, admin_key: str, local_backend: Any, second_admin: str
) -> None:
    tenant, _ = funded_tenant(call, admin_key, (7_000,))
    requested = call(
        "POST",
        f"/admin/v1/tenants/{tenant.id}/capabilities",
        key=admin_key,
        json={"capability": "settlement_finalization", "mode": "live", "contract_ref": "BANK-2026-7"},
        headers=idem(),
    )
    assert requested.status == 202, requested.json()
    approved = call(
        "POST",
        f"/admin/v1/tenants/{tenant.id}/capability-requests/{requested.json()['id']}/approve",
        key=second_admin,
        json={},
    )
    assert approved.status == 200, approved.json()

    for _ in range(2):
        assert run(local_backend, {"tenant_id": tenant.id, "date": today()})["status"] == "SUCCEEDED"
    (record,) = records(tenant)
    assert record["mode"] == "live" and record["posted_txn_id"]
    verify(record)
    posted = call("GET", f"/v1/transactions/{record['posted_txn_id']}", key=tenant.key).json()
    assert posted["type"] == "settlement" and posted["status"] == "SETTLED"
    assert sorted((leg["account_id"], leg["amount_minor"]) for leg in posted["legs"]) == [
        ("sys_funding_clearing_eur", 7_000),
        ("sys_safeguarding_eur", -7_000),
    ]


def test_each_provider_settles_its_own_items_even_after_the_tenant_switched_adapters(
    call: Any, admin_key: str, local_backend: Any
) -> None:
    """A funding through the instant bank, then the tenant moves to the asynchronous sandbox and a second funding
    settles there by webhook: two records, one per provider, each with its own item and signature."""
    from tests.integration.open_banking_helpers import SANDBOX, deliver, holder, outbox, use_provider

    tenant, _ = funded_tenant(call, admin_key, (4_000,))
    use_provider(call, admin_key, tenant, SANDBOX)
    _, ref, account = holder(call, tenant)
    made = call(
        "POST",
        "/v1/fundings",
        key=tenant.key,
        headers=idem(),
        json={"account_id": account, "amount_minor": 2_500, "currency": "EUR"},
    )
    assert made.status == 201 and made.json()["status"] == "CREATED", made.json()
    for outgoing in outbox("collection", tenant, made.json(), ref):
        assert deliver(call, SANDBOX, outgoing.body).status == 200

    done = run(local_backend, {"tenant_id": tenant.id, "date": today()})
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"])["settlements"] == 2, done
    found = {record["provider"]: record for record in records(tenant)}
    assert {name: (r["amount_minor"], r["item_count"]) for name, r in found.items()} == {
        "sandbox_open_banking_instant": (4_000, 1),
        SANDBOX: (2_500, 1),
    }
    assert found[SANDBOX]["document"]["txn_ids"] == [made.json()["id"]]
    assert found[SANDBOX]["provider_reference"] == f"{SANDBOX}:funding_clearing:EUR:{today()}"
    for record in found.values():
        verify(record)


def test_a_task_failing_twice_is_retried_and_the_run_settles_once(
    call: Any, admin_key: str, local_backend: Any
) -> None:
    tenant, _ = funded_tenant(call, admin_key, (3_000,))
    dispatch = local_backend.states
    before = dispatch.invocations.get("SettlementFunction", 0)
    dispatch.fail_next("SettlementFunction", 2)  # Plan fails twice (a Lambda service error), then runs
    done = run(local_backend, {"tenant_id": tenant.id, "date": today()})
    assert done["status"] == "SUCCEEDED", done
    # Plan x3 (two faults, then the real one), one SettleBatch, Summarize.
    assert dispatch.invocations["SettlementFunction"] - before == 5
    (record,) = records(tenant)
    assert (record["amount_minor"], record["item_count"]) == (3_000, 1)
    verify(record)


def test_a_task_failing_beyond_its_retries_ends_in_the_catch_path(
    call: Any, admin_key: str, local_backend: Any
) -> None:
    tenant, _ = funded_tenant(call, admin_key, (1_000,))
    dispatch = local_backend.states
    before = dispatch.invocations.get("SettlementFunction", 0)
    dispatch.fail_next("SettlementFunction", 4)  # the first attempt of Plan and its three retries
    done = run(local_backend, {"tenant_id": tenant.id, "date": today()})
    assert (done["status"], done.get("error")) == ("FAILED", "SettlementFailed"), done
    assert dispatch.invocations["SettlementFunction"] - before == 4  # nothing ran after Plan gave up
    assert records(tenant) == []
    again = run(local_backend, {"tenant_id": tenant.id, "date": today()})  # safe to start again
    assert again["status"] == "SUCCEEDED" and [r["amount_minor"] for r in records(tenant)] == [1_000]


def test_a_failing_task_ends_in_the_catch_path(local_backend: Any) -> None:
    done = run(local_backend, {"tenant_id": "ten_doesnotexist", "date": today()})
    assert done["status"] == "FAILED"
    assert done.get("error") == "SettlementFailed"


@pytest.fixture(scope="module")
def second_admin(local_backend: Any) -> str:
    from infra.local_stack import create_admin_key

    return create_admin_key(name="settlement-approver", role="admin")[1]
