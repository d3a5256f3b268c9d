"""Scheduled jobs, one entry point for the Jobs Lambda (EventBridge Scheduler) and `moncore jobs run`.

    expire_holds      release the open holds whose expiry has passed (every 5 minutes)
    snapshot          end-of-day balance snapshots of `date` (default: the last closed UTC day; daily at 00:15 UTC)
    rebuild_verify    recompute every derived item from the ledger, record each mismatch (daily)
    rebuild_restore   the same, and rewrite the derived items from the ledger (disaster recovery; on demand)
    rescreen          screen again every user whose sanctions lists version changed (docs/screening.md; daily)
    tier_enforcement  expired KYC evidence -> tier_0; a case per user above their tier's cap (docs/kyc.md; daily)
    aml_sweep         score every user's last 30 days with the sweep rules; a case per finding (docs/aml.md; daily)
    seal              seal the legs and audit events recorded since the last block into signed blocks (docs/audit.md;
                      every 2 minutes)
    verify_chain      recompute every seal from stored history; a broken chain fails the run (docs/audit.md; daily)

Each (tenant, job) run holds a lease (store/leases.py) so two runs never overlap: a run that finds the lease held
answers `{"skipped": ...}` and changes nothing. Every run, skipped or not, writes one audit event `job.<name>` with a
summary and the hash of its full result (except `seal`, whose record is the signed block itself: UNAUDITED_JOBS). A
result carrying an "error" (verify_chain finding a broken chain) fails the run like an exception does.

Without a tenant id a job runs for every tenant, one after the other; a tenant that fails does not stop the others,
but the run then raises JobFailed at the end so the invocation counts as failed (alarms, scheduler retries: every
job is safe to run again).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from moncore.audit import sealing
from moncore.compliance.aml import sweep as aml_sweep
from moncore.compliance.kyc import TierEnforcement
from moncore.compliance.screening.gate import default_gate as default_screening_gate
from moncore.domain.audit import audit_event
from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import DomainError, ValidationFailed
from moncore.domain.seals import stream_tenants
from moncore.domain.snapshots import check_day
from moncore.ledger.lifecycle import LifecycleService
from moncore.ledger.rebuild import RebuildService
from moncore.ledger.snapshots import SnapshotService
from moncore.store import audit as audit_store
from moncore.store import leases as lease_store
from moncore.store import tenancy as tenancy_store

JOBS = (
    "expire_holds",
    "snapshot",
    "rebuild_verify",
    "rebuild_restore",
    "rescreen",
    "tier_enforcement",
    "aml_sweep",
    "seal",
    "verify_chain",
)
# Runs not written to the audit table: a seal run's record is the signed block it writes, and auditing it would hand
# the next run a new item to seal, so every tenant would get a block per run forever with nothing else happening.
UNAUDITED_JOBS = frozenset({"seal"})
JOB_ACTOR = "system:jobs"
LEASE_S = 960  # longer than JobsFunction's 900 s timeout: a lease lapses only once its holder cannot still run
_EXPIRY_ROUNDS = 50  # 100 holds per round: a backlog larger than this waits for the next run (5 minutes)

log = logging.getLogger("moncore.jobs")


class JobFailed(Exception):
    """At least one tenant's run failed; `result` holds every tenant's outcome."""

    def __init__(self, result: dict[str, Any]) -> None:
        failed = [r["tenant_id"] for r in result["results"] if "error" in r]
        super().__init__(f"job {result['job']} failed for tenants {', '.join(failed)}")
        self.result = result


def run_job(
    job: str, tenant_id: str | None = None, day: str | None = None, *, now: str | None = None
) -> dict[str, Any]:
    """Run `job` for one tenant (or every tenant). `now` (tests, replays) stands in for the current instant."""
    if job not in JOBS:
        raise ValidationFailed(f"job must be one of {', '.join(JOBS)}", errors=[{"loc": ["job"], "msg": str(job)}])
    if day is not None:
        if job != "snapshot":
            raise ValidationFailed("date applies only to the snapshot job", errors=[{"loc": ["date"], "msg": day}])
        check_day(day)
    tenants = [tenant_id] if tenant_id else tenancy_store.tenant_ids()
    return _run_for(job, tenants, day, now, single=bool(tenant_id))


def seal_from_stream(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The seal job for the tenants whose ledger legs or audit events arrived in a DynamoDB stream batch (the Ledger
    and Audit table streams trigger the Jobs function on AWS; docs/audit.md). Concurrent batches of one tenant meet
    at its lease: the later run is skipped and the next one seals what it would have."""
    return _run_for("seal", stream_tenants(records), None, None, single=False)


def _run_for(job: str, tenants: Sequence[str], day: str | None, now: str | None, *, single: bool) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for tenant in tenants:
        try:
            results.append({"tenant_id": tenant, **_leased_run(job, tenant, day, now)})
        except DomainError:
            if single:
                raise  # one tenant asked for: its refusal (bad date, ...) is the answer
            log.exception("job %s failed for tenant %s", job, tenant)
            results.append({"tenant_id": tenant, "error": "refused"})
        except Exception as error:
            if single:
                raise
            log.exception("job %s failed for tenant %s", job, tenant)
            results.append({"tenant_id": tenant, "error": type(error).__name__})
    result = {"job": job, "tenants": len(tenants), "results": results}
    if any("error" in r for r in results):
        raise JobFailed(result)
    return result


def _leased_run(job: str, tenant_id: str, day: str | None, now: str | None) -> dict[str, Any]:
    """Run under the (tenant, job) lease and audit the run; a run that finds the lease taken is skipped (audited)."""
    token = uuid.uuid4().hex
    started_at = now_rfc3339()
    if not lease_store.acquire(
        tenant_id, job, owner_token=token, now_s=int(time.time()), lease_s=LEASE_S, acquired_at=started_at
    ):
        result: dict[str, Any] = {"skipped": "another run of this job holds the lease"}
    else:
        try:
            result = _run_one(job, tenant_id, day, now)
        finally:
            lease_store.release(tenant_id, job, owner_token=token)
    if job in UNAUDITED_JOBS:
        return result
    audit_store.append(
        audit_event(
            tenant_id=tenant_id,
            action=f"job.{job}",
            actor=JOB_ACTOR,
            correlation_id=f"job-{job}-{token}",
            subject_id=job,
            payload={
                "job": job,
                "date": day,
                "started_at": started_at,
                "summary": {k: (len(v) if isinstance(v, list | dict) else v) for k, v in result.items()},
                "result_hash": sha256_hex(result),
            },
        )
    )
    return result


def _run_one(job: str, tenant_id: str, day: str | None, now: str | None) -> dict[str, Any]:
    if job == "seal":
        return sealing.seal_tenant(tenant_id)  # real time only: `now` cannot move the late window (docs/audit.md)
    if job == "verify_chain":
        return sealing.verify_chain(tenant_id)
    if job == "aml_sweep":
        return aml_sweep(tenant_id, now=now, correlation_id=f"job-aml_sweep-{uuid.uuid4().hex}")
    if job == "tier_enforcement":
        correlation_id = f"job-tier_enforcement-{uuid.uuid4().hex}"
        return TierEnforcement().run(tenant_id, now=now, correlation_id=correlation_id)
    if job == "rescreen":
        return default_screening_gate().rescreen_tenant(tenant_id, correlation_id=f"job-rescreen-{uuid.uuid4().hex}")
    if job == "expire_holds":
        released: list[str] = []
        lifecycle = LifecycleService()
        for _ in range(_EXPIRY_ROUNDS):
            batch = lifecycle.expire_due_holds(tenant_id, now=now)
            released += batch
            if not batch:
                break
        return {"released": released}
    if job == "snapshot":
        return SnapshotService().snapshot(tenant_id, day, now=now).as_dict()
    mode = "verify" if job == "rebuild_verify" else "restore"
    return RebuildService().run(tenant_id, mode, now=now).as_dict()
