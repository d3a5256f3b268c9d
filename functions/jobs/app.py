"""Scheduled jobs (EventBridge Scheduler): {"job": "expire_holds" | "snapshot" | "rebuild_verify" | "rebuild_restore" |
"rescreen" | "tier_enforcement", "tenant_id"?: str, "date"?: "YYYY-MM-DD"}. Without tenant_id the job runs for every
tenant. One kernel call."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.ledger.jobs import run_job

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job=event.get("job"), tenant_id=event.get("tenant_id"))
    result = run_job(str(event.get("job", "")), event.get("tenant_id") or None, event.get("date") or None)
    logger.info("job finished", tenants=result["tenants"])
    return result
