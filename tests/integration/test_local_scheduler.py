"""The local scheduler runs template.yaml's schedules in the target function's own worker process (Lambda container):
the real JobsFunction on DynamoDB Local, by hand and from the background thread, and a failing job that the
scheduler reports and survives."""

from __future__ import annotations

import os
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.resources import name_resources
from infra.scheduler import Run, Scheduler
from infra.template import ResolveContext, load_template, parameter_values
from tests.integration.helpers import fund, new_account, new_tenant, new_user
from tests.integration.ledger_scenario import transfer

pytestmark = pytest.mark.xdist_group("integration")


def test_triggering_expire_holds_runs_the_jobs_function_and_releases_an_expired_hold(
    local_backend: Any, call: Any, admin_key: str
) -> None:
    tenant = new_tenant(call, admin_key, "Scheduler")
    payer = new_account(call, tenant, new_user(call, tenant))
    payee = new_account(call, tenant, new_user(call, tenant))
    fund(call, tenant, payer, 5_000)
    expiry = datetime.now(UTC) + timedelta(seconds=1.2)
    held = transfer(call, tenant, payer, payee, 700, capture="manual", hold_expires_at=expiry.isoformat())

    scheduler = local_backend.scheduler(enabled=False)  # nothing fires by itself: only the trigger below runs
    try:
        time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.1)
        run = scheduler.trigger("ExpireHolds")
    finally:
        scheduler.stop()

    assert run.ok, run.error
    assert run.schedule == "JobsFunction.ExpireHolds" and run.due_at is None
    result = run.result  # what functions/jobs/app.py returned, from its worker process
    assert result["job"] == "expire_holds" and result["tenants"] >= 1  # the Input has no tenant: every tenant
    assert [r for r in result["results"] if r["tenant_id"] == tenant.id] == [
        {"tenant_id": tenant.id, "released": [held["id"]]}
    ]
    assert call("GET", f"/v1/transactions/{held['id']}", key=tenant.key).json()["status"] == "REVERSED"
    assert scheduler.runs() == [run]


def test_the_background_thread_fires_expire_holds_on_a_sped_up_clock(local_backend: Any) -> None:
    # The scheduler's clock starts at noon, so at 600x only the rate schedules come due in this test (ExpireHolds'
    # rate(5 minutes) every 0.5 s, Seal's rate(2 minutes) every 0.2 s); the daily crons (00:15, 01:45) are more than a
    # minute of real time away. This test is about ExpireHolds, so it waits for that one.
    started, noon = time.monotonic(), datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    scheduler = local_backend.scheduler(speed=600, clock=lambda: noon + timedelta(seconds=time.monotonic() - started))
    fired: list[Run] = []
    with scheduler:
        deadline = time.monotonic() + 30  # a cold start of the jobs container included
        while time.monotonic() < deadline and not fired:
            fired = [r for r in scheduler.runs() if r.due_at is not None and r.schedule == "JobsFunction.ExpireHolds"]
            time.sleep(0.05)
    assert fired, "rate(5 minutes) at 600x never fired"
    assert {r.schedule for r in scheduler.runs()} <= {"JobsFunction.ExpireHolds", "JobsFunction.Seal"}
    assert fired[0].ok, fired[0].error
    assert fired[0].result["job"] == "expire_holds"
    assert fired[0].due_at is not None and fired[0].due_at > noon


FAILING_TEMPLATE = """
Parameters:
  EnvironmentName: {Type: String, Default: test}
Resources:
  JobsFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${EnvironmentName}-jobs"
      CodeUri: jobs/
      Handler: app.lambda_handler
      Environment:
        Variables:
          POWERTOOLS_SERVICE_NAME: jobs
          JOB_SETTING: !Sub "setting-${EnvironmentName}"
      Events:
        Boom: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(1 minute), Input: '{"job": "boom"}'}}
        Fine: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(1 minute), Input: '{"job": "fine"}'}}
"""

JOBS_HANDLER = """
import os


def lambda_handler(event, context):
    if event["job"] == "boom":
        raise RuntimeError("the job exploded")
    return {
        "job": event["job"],
        "pid": os.getpid(),
        "function_name": context.function_name,
        "service": os.environ["POWERTOOLS_SERVICE_NAME"],
        "setting": os.environ["JOB_SETTING"],
    }
"""


def test_a_failing_job_is_reported_and_the_scheduler_carries_on_in_the_functions_own_container(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "template.yaml").write_text(FAILING_TEMPLATE)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "app.py").write_text(textwrap.dedent(JOBS_HANDLER))
    template = load_template(tmp_path / "template.yaml")
    ctx = name_resources(template, ResolveContext(parameter_values(template)))
    scheduler = Scheduler(template, ctx, base_dir=tmp_path, enabled=False)
    try:
        with caplog.at_level("ERROR", logger="infra.scheduler"):
            failed = scheduler.trigger("Boom")
        fine = scheduler.trigger("Fine")
    finally:
        scheduler.stop()
    assert not failed.ok and failed.error == "RuntimeError: the job exploded"
    assert "JobsFunction.Boom" in caplog.text and 'raise RuntimeError("the job exploded")' in caplog.text  # its trace
    assert fine.ok, fine.error
    assert fine.result["job"] == "fine" and fine.result["function_name"] == "test-jobs"
    assert (fine.result["service"], fine.result["setting"]) == ("jobs", "setting-test")  # the function's environment
    assert fine.result["pid"] != os.getpid()  # a worker process, not this one
