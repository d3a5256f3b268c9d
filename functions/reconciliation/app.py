"""Reconciliation state machine tasks (statemachines/reconciliation.asl.json). One step, one kernel call; errors raise
so the state machine's Retry / Catch see them by class name (ProviderUnavailable is retried, StatementMalformed is
not: the run fails with it)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.domain.errors import ValidationFailed
from moncore.reconciliation.service import ReconciliationService

logger = Logger()
reconciliation = ReconciliationService()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    step = event.get("step")
    correlation_id = str(event.get("correlation_id") or context.aws_request_id)
    run_id = str(event.get("run_id") or "")
    if step == "plan":
        return reconciliation.plan(dict(event.get("input") or {}), correlation_id)
    if step == "ingest":
        return reconciliation.ingest(run_id, correlation_id)
    if step == "load_ledger":
        return reconciliation.load_ledger(run_id)
    if step == "match":
        return reconciliation.match(run_id)
    if step == "balance_check":
        return reconciliation.balance_check(run_id)
    if step == "write_report":
        return reconciliation.write_report(run_id)
    if step == "complete":
        return reconciliation.complete(run_id, correlation_id)
    if step == "fail":
        return reconciliation.fail(run_id, dict(event.get("error") or {}), correlation_id)
    if step == "conclude":
        return reconciliation.conclude(str(event.get("date")), list(event.get("results") or []))
    raise ValidationFailed(f"unknown reconciliation step {step!r}")
