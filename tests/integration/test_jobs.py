"""Scheduled jobs: the Jobs function's handler (as EventBridge Scheduler invokes it) and `moncore jobs run` against
the local stack, in a separate process that finds the stack through its state file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from tests.integration.helpers import Tenant, fund, new_account, new_tenant, new_user
from tests.integration.ledger_scenario import transfer

pytestmark = pytest.mark.xdist_group("integration")

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LambdaContext:
    function_name: str = "moncore-sandbox-jobs"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:moncore-sandbox-jobs"
    aws_request_id: str = "req-jobs"


def jobs_handler() -> Any:
    """functions/jobs/app.py's lambda_handler, imported like Lambda imports it (after the stack's environment)."""
    spec = importlib.util.spec_from_file_location("moncore_jobs_app", REPO_ROOT / "functions" / "jobs" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


@pytest.fixture
def funded(call: Any, admin_key: str) -> tuple[Tenant, str, str]:
    tenant = new_tenant(call, admin_key, "Jobs")
    payer = new_account(call, tenant, new_user(call, tenant))
    payee = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, payer, 5_000)
    return tenant, payer, payee


def test_the_jobs_function_runs_each_job_for_one_tenant(call: Any, funded: tuple[Tenant, str, str]) -> None:
    from moncore.domain.errors import ValidationFailed

    tenant, payer, payee = funded
    handler, context = jobs_handler(), LambdaContext()
    expiry = datetime.now(UTC) + timedelta(seconds=1.2)
    held = transfer(call, tenant, payer, payee, 700, capture="manual", hold_expires_at=expiry.isoformat())
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.1)

    expired = handler({"job": "expire_holds", "tenant_id": tenant.id}, context)
    assert expired == {
        "job": "expire_holds",
        "tenants": 1,
        "results": [{"tenant_id": tenant.id, "released": [held["id"]]}],
    }
    assert call("GET", f"/v1/transactions/{held['id']}", key=tenant.key).json()["status"] == "REVERSED"

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    snapshot = handler({"job": "snapshot", "tenant_id": tenant.id, "date": yesterday}, context)
    assert snapshot["results"] == [
        {"tenant_id": tenant.id, "date": yesterday, "accounts": 3, "snapshots_written": 0}  # no entries yesterday
    ]

    verified = handler({"job": "rebuild_verify", "tenant_id": tenant.id}, context)["results"][0]
    assert verified["counts"] == {"reported": 0, "restored": 0, "changed_during_run": 0}
    assert verified["checked"]["hold"] == 1 and verified["checked"]["balance"] >= 3 and verified["exceptions"] == []

    for bad in ({"job": "reconcile"}, {"job": "expire_holds", "date": yesterday}, {"job": "snapshot", "date": "31/12"}):
        with pytest.raises(ValidationFailed):
            handler({"tenant_id": tenant.id} | bad, context)


def test_a_job_without_a_tenant_runs_for_every_tenant(call: Any, admin_key: str) -> None:
    first, second = new_tenant(call, admin_key, "Jobs A"), new_tenant(call, admin_key, "Jobs B")
    ran = jobs_handler()({"job": "expire_holds"}, LambdaContext())
    tenants = {result["tenant_id"] for result in ran["results"]}
    assert {first.id, second.id} <= tenants and ran["tenants"] == len(tenants)


def test_moncore_jobs_run_reaches_the_local_stack_through_its_state_file(
    local_backend: Any, funded: tuple[Tenant, str, str], tmp_path: Path
) -> None:
    from infra.local_stack import LocalStack, StackInfo

    tenant, _, _ = funded
    stack = LocalStack(state_dir=tmp_path)
    stack.backend = local_backend  # what `make run` writes, for this test's stack
    stack._write_state(StackInfo(base_url="http://127.0.0.1:0", admin_key="-", tenant_key="-", tenant_id="-"))
    # A fresh shell: no table names, no endpoints; only where the state file is.
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("MONCORE_", "AWS_ENDPOINT_URL"))}
    shell["MONCORE_STATE_DIR"] = str(tmp_path)

    def moncore(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "moncore.cli", "jobs", "run", *args]
        return subprocess.run(command, env=shell, capture_output=True, text=True, timeout=120, check=False)

    done = moncore("rebuild_verify", "--tenant", tenant.id)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["results"][0]
    assert report["tenant_id"] == tenant.id and report["counts"]["reported"] == 0
    assert report["checked"]["balance"] >= 3  # it read this tenant's accounts: the stack's tables, not defaults
    records = boto3.resource("dynamodb").Table(os.environ["MONCORE_EXCEPTIONS_TABLE"])
    summary = records.query(KeyConditionExpression=Key("pk").eq(f"{tenant.id}#{report['run_id']}"))["Items"]
    assert [item["sk"] for item in summary] == ["RUN"]

    refused = moncore("snapshot", "--tenant", tenant.id, "--date", "2999-01-01")
    assert refused.returncode == 2 and "not closed yet" in refused.stderr

    # `verify`, the contract's name (../shared/API.md), runs the chain-integrity job.
    verified = moncore("verify", "--tenant", tenant.id)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["job"] == "verify_chain"


def test_a_run_that_finds_the_lease_held_is_skipped_and_both_runs_are_audited(
    call: Any, funded: tuple[Tenant, str, str]
) -> None:
    from moncore.ledger.jobs import run_job
    from moncore.store import leases

    tenant, _, _ = funded
    now_s = int(time.time())
    held = leases.acquire(
        tenant.id, "expire_holds", owner_token="other-run", now_s=now_s, lease_s=600, acquired_at="t0"
    )
    assert held
    skipped = run_job("expire_holds", tenant.id)
    assert skipped["results"][0]["skipped"]  # an overlapping run changes nothing
    assert not leases.acquire(tenant.id, "expire_holds", owner_token="third", now_s=now_s, lease_s=600, acquired_at="t")
    leases.release(tenant.id, "expire_holds", owner_token="not-the-holder")  # only the holder can release
    assert not leases.acquire(tenant.id, "expire_holds", owner_token="third", now_s=now_s, lease_s=600, acquired_at="t")
    leases.release(tenant.id, "expire_holds", owner_token="other-run")
    ran = run_job("expire_holds", tenant.id)
    assert ran["results"][0] == {"tenant_id": tenant.id, "released": []}
    # a lapsed lease (its holder died) is taken over
    assert leases.acquire(tenant.id, "snapshot", owner_token="dead", now_s=now_s - 2_000, lease_s=600, acquired_at="t")
    assert leases.acquire(tenant.id, "snapshot", owner_token="alive", now_s=now_s, lease_s=600, acquired_at="t")
    leases.release(tenant.id, "snapshot", owner_token="alive")

    audit = boto3.resource("dynamodb").Table(os.environ["MONCORE_AUDIT_TABLE"])
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    events = audit.query(KeyConditionExpression=Key("pk").eq(f"{tenant.id}#{today}"), ConsistentRead=True)["Items"]
    runs = [e for e in events if e["action"] == "job.expire_holds"]
    assert len(runs) == 2 and {e["actor"] for e in runs} == {"system:jobs"}
    assert sorted("skipped" in json.loads(e["payload"])["summary"] for e in runs) == [False, True]
