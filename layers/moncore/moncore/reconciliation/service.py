"""Daily reconciliation runs (docs/reconciliation.md "Runs", "Reports"), run by statemachines/reconciliation.asl.json:

    plan -> per run: ingest -> load_ledger -> match -> balance_check -> write_report -> complete
                     (any task failing after its retries: fail, which records the run FAILED)
         -> conclude (the execution fails when any run failed)

A run is one (tenant, provider, date), its id derived from them (moncore.domain.reconciliation_runs): `start` (the
admin API) and `plan` (the schedule, `moncore jobs run`) claim it by writing its first version, so a second start
answers the existing run and starts nothing; a FAILED run is started again as its next attempt. Every task reads the
run's latest version, does its part only if the run has not recorded it yet (a retried task answers what was
recorded) and records the result as the next version (append-only, see moncore.store.reconciliations).

Tasks hand data to each other through objects, not the state machine's payload (256 KiB): ingest freezes the bank
lines and load_ledger the ledger items as gzipped JSON lines under the run's evidence prefix; match streams both
through the bounded-memory matcher into a results object; write_report turns the results into report.json and
report.csv (SHA-256 recorded on the run) and one exception record per result that is not `matched`.

Errors: NotFound (tenant, run, statement key), ValidationFailed (bad date, provider without adapter and no statement),
StatementMalformed (the run fails with it; the file stays in the bucket), ProviderUnavailable (the bank: retried),
InvalidStateTransition (a task for a run that is no longer running), ConcurrencyConflict (retried).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import IO, Any, cast

import boto3

from moncore.config import settings
from moncore.domain.audit import audit_event
from moncore.domain.canonical import canonical_bytes
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, Result
from moncore.domain.errors import (
    ConcurrencyConflict,
    InvalidStateTransition,
    NotFound,
    ValidationFailed,
)
from moncore.domain.reconciliation import BankLine, LedgerItem, bank_line
from moncore.domain.reconciliation_runs import (
    ACTOR,
    REPORT_COLUMNS,
    BalanceCheck,
    ExceptionStatus,
    RunStatus,
    Step,
    Tally,
    completion_document,
    done,
    empty_counts,
    exception_id_of,
    failed_task,
    is_exception,
    report_row,
    run_id_of,
    tally,
)
from moncore.domain.snapshots import check_day, last_closed_day
from moncore.domain.statements import StatementBalance, StatementEntry
from moncore.providers.statements import StatementRequest, statement_source
from moncore.reconciliation import ledger_side
from moncore.reconciliation.matching import Reconciler
from moncore.reconciliation.statements import parse_statement
from moncore.store import reconciliations as store
from moncore.store import signing
from moncore.store import tenancy as tenancy_store
from moncore.store.models import ReconciliationItem
from moncore.tenancy.service import TenancyService

_ATTEMPTS = 5  # re-reads when another writer appended the run's next version first
_WRITERS = 8  # parallel exception writes (each a conditional PutItem: BatchWriteItem is denied on the table)
CLOSING = "CLBD"  # the closing booked balance of a statement (ISO 20022 balance type)


class ReconciliationService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    # ---------------------------------------------------------------- starting a run
    def start(self, caller: Caller, *, tenant_id: str, provider: str, day: str, statement_s3_key: str | None) -> Result:
        """Claim the run of (tenant, provider, day) and start its execution; an existing run (running or completed)
        is answered as it is, nothing started. The statement is `statement_s3_key` in the evidence bucket, or what
        the provider's statement adapter delivers."""
        day = check_day(day)
        if day > now_rfc3339()[:10]:
            raise ValidationFailed(
                f"{day} has not begun (UTC): there is nothing to reconcile yet",
                errors=[{"loc": ["body", "date"], "msg": "a day up to today (UTC)"}],
            )
        self._tenancy.get_tenant(tenant_id)  # NotFound
        if statement_s3_key is None:
            statement_source(provider)  # ValidationFailed when the provider has no adapter
        elif not store.object_exists(statement_s3_key):
            raise ValidationFailed(
                f"no statement {statement_s3_key} in the evidence bucket",
                errors=[{"loc": ["body", "statement_s3_key"], "msg": "no such object"}],
            )
        run, started = self._claim(tenant_id, provider, day, statement_s3_key, caller, execution=None)
        if not started and run["status"] == RunStatus.RUNNING and self._execution_ended(run):
            self.fail(run["id"], {"Error": "ExecutionEnded", "Cause": "the execution ended without an outcome"})
            run, started = self._claim(tenant_id, provider, day, statement_s3_key, caller, execution=None)
        if started:
            try:
                _states().start_execution(
                    stateMachineArn=settings().reconciliation_state_machine_arn,
                    name=run["execution_name"],
                    input=json.dumps({"run_id": run["id"]}),
                )
            except Exception as failed:
                self.fail(run["id"], {"Error": type(failed).__name__, "Cause": str(failed)})
                raise
        return Result({"id": run["id"], "status": run["status"], "attempt": run["attempt"], "started": started})

    def plan(self, payload: dict[str, Any], correlation_id: str) -> dict[str, Any]:
        """The runs an execution reconciles: the one the admin API claimed ({"run_id"}), or one per tenant (all
        tenants when tenant_id is null, as the daily schedule sends) for the date (default: the last closed UTC
        day) with the tenant's open banking provider, skipping runs that exist and did not fail."""
        run_id = payload.get("run_id")
        if run_id:
            item = self._find(str(run_id))
            running = item.status == RunStatus.RUNNING
            return {"date": item.document["date"], "runs": [{"run_id": item.pk}] if running else []}
        day = check_day(payload["date"]) if payload.get("date") else last_closed_day(now_rfc3339())
        tenant_id = payload.get("tenant_id")
        if tenant_id is not None:
            self._tenancy.get_tenant(str(tenant_id))  # NotFound
        system = Caller(None, ACTOR, "system", correlation_id)
        runs = []
        for tenant in [str(tenant_id)] if tenant_id else tenancy_store.tenant_ids():
            if tenant_id is None and not ledger_side.provider_accounts(tenant):
                continue  # the schedule skips tenants that never moved money through a provider: nothing to show
            provider = str(payload.get("provider") or self._tenancy.tenant_config(tenant).open_banking_provider)
            run, started = self._claim(tenant, provider, day, None, system, execution=correlation_id)
            if started:
                runs.append({"run_id": run["id"]})
        return {"date": day, "runs": runs}

    def _claim(
        self,
        tenant_id: str,
        provider: str,
        day: str,
        statement_s3_key: str | None,
        caller: Caller,
        *,
        execution: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """(the run, whether this call started a new attempt): the first version of a new run, or the next attempt
        of a FAILED one; a RUNNING or COMPLETED run is answered as it is."""
        run_id = run_id_of(tenant_id, provider, day)
        for _ in range(_ATTEMPTS):
            latest = store.latest_run(run_id)
            if latest is not None and latest.status != RunStatus.FAILED:
                return dict(latest.document), False
            attempt = 1 if latest is None else int(latest.document["attempt"]) + 1
            now = now_rfc3339()
            run = {
                "id": run_id,
                "tenant_id": tenant_id,
                "provider": provider,
                "date": day,
                "status": RunStatus.RUNNING.value,
                "step": Step.CLAIMED.value,
                "attempt": attempt,
                "statement_s3_key": statement_s3_key,
                "execution_name": execution or f"{run_id}-a{attempt}",
                "started_at": now,
                "started_by": caller.actor,
                "completed_at": None,
                "error": None,
            }
            audit = audit_event(
                tenant_id=tenant_id,
                action="reconciliation.started",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=run_id,
                payload={k: run[k] for k in ("id", "provider", "date", "attempt", "statement_s3_key")},
            )
            version = 1 if latest is None else int(latest.version) + 1
            try:
                store.append(_run_item(run, version, caller.actor), audits=(audit,))
            except store.VersionTaken:
                continue
            return run, True
        raise ConcurrencyConflict(f"run {run_id} is being started concurrently; retry")

    def _execution_ended(self, run: dict[str, Any]) -> bool:
        """Whether the execution of a RUNNING run is over: it died without recording an outcome (e.g. its failure
        task could not write). The run records its execution's name, whoever started it."""
        arn = settings().reconciliation_state_machine_arn
        if not arn:
            return False
        execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{run['execution_name']}"
        try:
            status = _states().describe_execution(executionArn=execution_arn)["status"]
        except _states().exceptions.ExecutionDoesNotExist:
            return True
        return str(status) != "RUNNING"

    # ---------------------------------------------------------------- pipeline tasks
    def ingest(self, run_id: str, correlation_id: str) -> dict[str, Any]:
        """Fetch (or find) the statement, keep it in the evidence bucket, parse it to its end and freeze its booked
        entries as bank lines. A malformed file raises StatementMalformed naming the place; the file stays."""
        item, run = self._running(run_id)
        if done(run["step"], Step.INGESTED):
            return _out(run)
        key = run["statement_s3_key"] or self._deliver(run, correlation_id)
        stream, version_id = store.open_object(key)
        reader = _HashingReader(stream)
        closing: dict[tuple[str, str], StatementBalance] = {}
        sources: set[str] = set()
        counts = {"entries": 0, "not_booked": 0}
        with tempfile.TemporaryDirectory(prefix="moncore-recon-") as tmp:
            path = Path(tmp) / "bank_lines.jsonl.gz"
            with gzip.open(path, "wt", encoding="utf-8") as out:
                for record in parse_statement(cast(IO[bytes], reader), name=key.rsplit("/", 1)[-1]):
                    sources.add(record.source)
                    if isinstance(record, StatementBalance):
                        _keep_closing(closing, record)
                        continue
                    counts["entries"] += 1
                    if not _booked(record):
                        counts["not_booked"] += 1
                        continue
                    out.write(json.dumps(list(bank_line(record, default_date=run["date"]))) + "\n")
            reader.drain()
            frozen = store.put_file(_work_key(run, "bank_lines.jsonl.gz"), path, "application/gzip")
        balances: dict[str, dict[str, Any]] = {}
        for balance in sorted(closing.values(), key=lambda b: (b.currency, b.statement_id)):
            entry = balances.setdefault(balance.currency, {"closing_minor": 0, "date": balance.date, "accounts": 0})
            entry["closing_minor"] += balance.amount_minor
            entry["date"] = max(entry["date"] or "", balance.date or "") or None
            entry["accounts"] += 1
        statement = {
            "key": key,
            "version_id": version_id,
            "sha256": reader.sha256,
            "size_bytes": reader.size,
            "formats": sorted(sources),
            **counts,
        }
        inputs = {"bank_lines": frozen.record()}
        return self._record(item, run, Step.INGESTED, statement=statement, balances=balances, inputs=inputs)

    def load_ledger(self, run_id: str) -> dict[str, Any]:
        """Freeze the ledger side: the tenant's SETTLED legs of the provider on the day (ledger_side.day_legs)."""
        item, run = self._running(run_id)
        if done(run["step"], Step.LOADED):
            return _out(run)
        count = 0
        with tempfile.TemporaryDirectory(prefix="moncore-recon-") as tmp:
            path = Path(tmp) / "ledger_items.jsonl.gz"
            with gzip.open(path, "wt", encoding="utf-8") as out:
                for _, ledger_item in ledger_side.day_legs(run["tenant_id"], run["provider"], run["date"]):
                    out.write(json.dumps(list(ledger_item)) + "\n")
                    count += 1
            frozen = store.put_file(_work_key(run, "ledger_items.jsonl.gz"), path, "application/gzip")
        inputs = {**run["inputs"], "ledger_items": frozen.record()}
        return self._record(item, run, Step.LOADED, inputs=inputs, ledger_items=count)

    def match(self, run_id: str) -> dict[str, Any]:
        """Stream the frozen lines and items through the matcher (moncore.reconciliation.matching); every result goes
        to the results object with its exception id, and is tallied for the balance check."""
        item, run = self._running(run_id)
        if done(run["step"], Step.MATCHED):
            return _out(run)
        counts = empty_counts()
        tallies: dict[str, Tally] = {}
        with tempfile.TemporaryDirectory(prefix="moncore-recon-") as tmp:
            reconciler = Reconciler(workdir=tmp)
            bank = (BankLine._make(row) for row in _rows(run["inputs"]["bank_lines"]))
            ledger = (LedgerItem._make(row) for row in _rows(run["inputs"]["ledger_items"]))
            path = Path(tmp) / "results.jsonl.gz"
            with gzip.open(path, "wt", encoding="utf-8") as out:
                for result in reconciler.run(bank, ledger):
                    row = result.to_dict()
                    row["exception_id"] = exception_id_of(run_id, run["attempt"], row) if is_exception(row) else None
                    counts[result.outcome] += 1
                    tally(tallies, row)
                    out.write(json.dumps(row, separators=(",", ":")) + "\n")
            results = store.put_file(_work_key(run, "results.jsonl.gz"), path, "application/gzip")
        summary = reconciler.summary
        lines = {"bank_lines": summary.bank_lines, "ledger_items": summary.ledger_items, "spilled": summary.spilled}
        return self._record(
            item,
            run,
            Step.MATCHED,
            inputs={**run["inputs"], "results": results.record()},
            counts=counts,
            lines=lines,
            tallies={currency: t.record() for currency, t in sorted(tallies.items())},
        )

    def balance_check(self, run_id: str) -> dict[str, Any]:
        """Per currency: the bank's closing balance against the clients' balances at the day's end plus the items in
        flight, and how much of the difference the day's exceptions explain."""
        item, run = self._running(run_id)
        if done(run["step"], Step.BALANCED):
            return _out(run)
        balances, tallies = run["balances"], run["tallies"]
        currencies = sorted(set(balances) | set(tallies) | set(ledger_side.currencies(run["tenant_id"])))
        checks = []
        for currency in currencies:
            bank = balances.get(currency) or {}
            counted = tallies.get(currency) or {}
            check = BalanceCheck(
                currency=currency,
                bank_closing_minor=bank.get("closing_minor"),
                bank_closing_date=bank.get("date"),
                client_balances_minor=ledger_side.client_balances_minor(run["tenant_id"], currency, run["date"]),
                in_flight_minor=int(counted.get("in_flight_minor", 0)),
                exceptions_minor=int(counted.get("exceptions_minor", 0)),
            )
            checks.append(check.record())
        return self._record(item, run, Step.BALANCED, balance_check=checks)

    def write_report(self, run_id: str) -> dict[str, Any]:
        """report.json and report.csv to the evidence bucket (their SHA-256 on the run), then one exception record
        per result that is not matched (first versions, written once: a retried task adds none)."""
        item, run = self._running(run_id)
        if done(run["step"], Step.REPORTED):
            return _out(run)
        prefix = _run_prefix(run)
        with tempfile.TemporaryDirectory(prefix="moncore-recon-") as tmp:
            json_path, csv_path = Path(tmp) / "report.json", Path(tmp) / "report.csv"
            exceptions = _write_reports(run, _rows(run["inputs"]["results"]), json_path, csv_path)
            reports = {
                "json": store.put_file(f"{prefix}/report.json", json_path, "application/json").record(),
                "csv": store.put_file(f"{prefix}/report.csv", csv_path, "text/csv").record(),
            }
        written = _write_exceptions(run, exceptions)
        return self._record(item, run, Step.REPORTED, reports=reports, exceptions=len(exceptions), written=written)

    def complete(self, run_id: str, correlation_id: str) -> dict[str, Any]:
        """Record the run COMPLETED (with its audit event: counts, balance check and report hashes)."""
        item, run = self._running(run_id, allow_done=True)
        if run["status"] == RunStatus.COMPLETED:
            return _out(run)
        now = now_rfc3339()
        document = completion_document(run, now)
        signature = signing.sign(canonical_bytes(document))
        audit = audit_event(
            tenant_id=run["tenant_id"],
            action="reconciliation.completed",
            actor=ACTOR,
            correlation_id=correlation_id,
            subject_id=run_id,
            payload={
                "id": run_id,
                "provider": run["provider"],
                "date": run["date"],
                "attempt": run["attempt"],
                "counts": run["counts"],
                "balance_check": run["balance_check"],
                "reports": {name: report["sha256"] for name, report in run["reports"].items()},
            },
        )
        return self._record(
            item,
            run,
            Step.COMPLETED,
            status=RunStatus.COMPLETED.value,
            completed_at=now,
            document=document,
            signature=signature.record(),
            audits=(audit,),
        )

    def fail(self, run_id: str, error: dict[str, Any], correlation_id: str = "") -> dict[str, Any]:
        """Record the run FAILED with the error the state machine caught ({"Error", "Cause"}); a run that is no longer
        running is left as it is."""
        for _ in range(_ATTEMPTS):
            item = self._find(run_id)
            run = dict(item.document)
            if run["status"] != RunStatus.RUNNING:
                return _out(run)
            failure = _failure(error, run["step"])
            audit = audit_event(
                tenant_id=run["tenant_id"],
                action="reconciliation.failed",
                actor=ACTOR,
                correlation_id=correlation_id,
                subject_id=run_id,
                payload={"id": run_id, "attempt": run["attempt"], "error": failure},
            )
            changes = {"status": RunStatus.FAILED.value, "completed_at": now_rfc3339(), "error": failure}
            try:
                return self._record(item, run, Step.FAILED, audits=(audit,), **changes)
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"run {run_id} is changing concurrently; retry")

    def conclude(self, day: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The execution's outcome: how many runs completed and failed (the state machine fails when any did)."""
        failed = sorted(r["run_id"] for r in results if r.get("status") != RunStatus.COMPLETED)
        return {
            "date": day,
            "runs": len(results),
            "completed": len(results) - len(failed),
            "failed": len(failed),
            "failed_runs": failed,
        }

    # ---------------------------------------------------------------- reads
    def get_run(self, run_id: str, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """The run's summary and a page of its (current attempt's) exceptions."""
        run = dict(self._find(run_id).document)
        items, next_cursor = store.exceptions_page(run_id, int(run["attempt"]), limit=limit, cursor=cursor)
        return run_view(run) | {"exceptions": {"items": [exception_view(i) for i in items], "next_cursor": next_cursor}}

    def _find(self, run_id: str) -> ReconciliationItem:
        item = store.latest_run(run_id)
        if item is None:
            raise NotFound(f"reconciliation {run_id} not found")
        return item

    # ---------------------------------------------------------------- internals
    def _running(self, run_id: str, *, allow_done: bool = False) -> tuple[ReconciliationItem, dict[str, Any]]:
        item = self._find(run_id)
        run = dict(item.document)
        if run["status"] == RunStatus.FAILED or (run["status"] == RunStatus.COMPLETED and not allow_done):
            raise InvalidStateTransition(f"reconciliation {run_id} is {run['status']}")
        return item, run

    def _record(
        self,
        item: ReconciliationItem,
        run: dict[str, Any],
        step: Step,
        *,
        audits: tuple[Any, ...] = (),
        **changes: Any,
    ) -> dict[str, Any]:
        """Append the run's next version: `run` with `changes`, at `step`. ConcurrencyConflict (retried by the
        state machine) when another writer appended first."""
        updated = {**run, **changes, "step": step.value}
        try:
            store.append(_run_item(updated, int(item.version) + 1, ACTOR), audits=audits)
        except store.VersionTaken:
            raise ConcurrencyConflict(f"reconciliation {run['id']} changed meanwhile; retry") from None
        return _out(updated)

    def _deliver(self, run: dict[str, Any], correlation_id: str) -> str:
        """Fetch the statement from the provider's adapter and keep it under statements/ (before parsing it, so a
        malformed delivery is evidence too); ProviderUnavailable propagates (the state machine retries)."""
        source = statement_source(run["provider"])
        delivered = source.fetch(StatementRequest(run["tenant_id"], run["provider"], run["date"], correlation_id))
        key = (
            f"statements/{run['tenant_id']}/{run['provider']}/{run['date']}/"
            f"{run['id']}-a{run['attempt']}-{delivered.filename}"
        )
        store.put_bytes(key, delivered.data, delivered.content_type)
        return key


# -------------------------------------------------------------------- views
def run_view(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "tenant_id": run["tenant_id"],
        "provider": run["provider"],
        "date": run["date"],
        "status": run["status"],
        "step": run["step"],
        "attempt": run["attempt"],
        "execution_name": run["execution_name"],
        "started_at": run["started_at"],
        "started_by": run["started_by"],
        "completed_at": run["completed_at"],
        "error": run["error"],
        "statement": run.get("statement"),
        "lines": run.get("lines"),
        "counts": run.get("counts") or empty_counts(),
        "balance_check": run.get("balance_check") or [],
        "reports": run.get("reports"),
        "exception_count": run.get("exceptions"),
        "document": run.get("document"),  # signed once COMPLETED (verify with the evidence key's public key)
        "signature": run.get("signature"),
    }


def exception_view(item: ReconciliationItem) -> dict[str, Any]:
    document = dict(item.document)
    return {**document, "status": item.status, "version": int(item.version), "updated_at": item.recorded_at}


def _out(run: dict[str, Any]) -> dict[str, Any]:
    """What a task answers the state machine: small (the run's record holds the rest)."""
    return {"run_id": run["id"], "status": run["status"], "step": run["step"]}


def _run_item(run: dict[str, Any], version: int, actor: str) -> ReconciliationItem:
    return ReconciliationItem(
        run["id"],
        store.versioned_sk(store.RUN, version),
        tenant_id=run["tenant_id"],
        kind="run",
        version=version,
        status=run["status"],
        document=run,
        recorded_at=now_rfc3339(),
        actor=actor,
    )


def _run_prefix(run: dict[str, Any]) -> str:
    return f"reconciliations/{run['tenant_id']}/{run['date']}/{run['id']}"


def _work_key(run: dict[str, Any], name: str) -> str:
    """The frozen inputs and results of an attempt: evidence of what the report was computed from."""
    return f"{_run_prefix(run)}/attempt-{run['attempt']}/{name}"


def _failure(error: dict[str, Any], step: str) -> dict[str, Any]:
    """{"type", "message", "task"} of a caught Step Functions error (Cause is the Lambda error's JSON)."""
    kind, cause = str(error.get("Error") or "Error"), error.get("Cause")
    message = str(cause or "")
    try:
        parsed = json.loads(message)
        if isinstance(parsed, dict):
            kind = str(parsed.get("errorType") or kind)
            message = str(parsed.get("errorMessage") or message)
    except ValueError:
        pass
    return {"type": kind, "message": message[:2000], "task": failed_task(step)}


def _booked(entry: StatementEntry) -> bool:
    """Pending (PDNG) and information-only (INFO) entries are not on the account yet: not reconciled."""
    return entry.status == "BOOK"


def _keep_closing(closing: dict[tuple[str, str], StatementBalance], balance: StatementBalance) -> None:
    """The latest closing booked balance of each statement account and currency."""
    if balance.type != CLOSING:
        return
    key = (balance.account or balance.statement_id, balance.currency)
    kept = closing.get(key)
    if kept is None or (balance.date or "") >= (kept.date or ""):
        closing[key] = balance


def _rows(obj: dict[str, Any]) -> Iterator[Any]:
    """The JSON lines of a frozen object (gzip), streamed from the exact version the run recorded."""
    stream, _ = store.open_object(obj["key"], obj.get("version_id"))
    with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
        for line in unzipped:
            if line.strip():
                yield json.loads(line)


def _write_reports(
    run: dict[str, Any], results: Iterator[dict[str, Any]], json_path: Path, csv_path: Path
) -> list[dict[str, Any]]:
    """Both report files, streamed (a result at a time); answers the exceptions to record."""
    exceptions: list[dict[str, Any]] = []
    header = {
        "report": "moncore.reconciliation",
        "version": 1,
        "run": {k: run.get(k) for k in ("id", "tenant_id", "provider", "date", "attempt", "statement", "lines")},
        "counts": run["counts"],
        "balance_check": run["balance_check"],
    }
    with json_path.open("w", encoding="utf-8") as out_json, csv_path.open("w", encoding="utf-8", newline="") as raw:
        writer = csv.writer(raw)
        writer.writerow(REPORT_COLUMNS)
        out_json.write(json.dumps(header, sort_keys=True)[:-1] + ', "results": [')
        for index, result in enumerate(results):
            out_json.write(("," if index else "") + "\n" + json.dumps(result, sort_keys=True))
            writer.writerow(report_row(result, result.get("exception_id")))
            if result.get("exception_id"):
                exceptions.append(result)
        out_json.write("\n]}\n")
    return exceptions


def _write_exceptions(run: dict[str, Any], results: list[dict[str, Any]]) -> int:
    """First versions of the exceptions (status open), in parallel; answers how many were new."""
    now = now_rfc3339()

    def write(result: dict[str, Any]) -> bool:
        document = {
            "id": result["exception_id"],
            "run_id": run["id"],
            "tenant_id": run["tenant_id"],
            "attempt": run["attempt"],
            **{k: v for k, v in result.items() if k != "exception_id"},
            "adjustment_id": None,
            "txn_id": None,
        }
        item = ReconciliationItem(
            run["id"],
            store.versioned_sk(store.exception_prefix(run["attempt"], result["exception_id"]), 1),
            tenant_id=run["tenant_id"],
            kind="exception",
            version=1,
            status=ExceptionStatus.OPEN.value,
            document=document,
            recorded_at=now,
            actor=ACTOR,
        )
        return store.put_new(item)

    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        return sum(pool.map(write, results))


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._stream.read() if size is None or size < 0 else self._stream.read(size)
        self._digest.update(chunk)
        self.size += len(chunk)
        return bytes(chunk)

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def drain(self) -> None:
        """Read what the parser left (trailing bytes after the document), so the hash is the whole file's."""
        while self.read(1 << 20):
            pass

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


@cache
def _states() -> Any:
    return boto3.client("stepfunctions", region_name=settings().region)
