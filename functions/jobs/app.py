"""Scheduled jobs (EventBridge Scheduler): {"job": "expire_holds" | "snapshot" | "rebuild_verify" | "rebuild_restore" |
"rescreen" | "tier_enforcement" | "aml_sweep" | "seal" | "verify_chain", "tenant_id"?: str, "date"?: "YYYY-MM-DD"}.
Without tenant_id the job runs for every tenant. A DynamoDB stream batch ({"Records": [...]}, Ledger and Audit
tables) runs the seal job for the tenants it names. One kernel call."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.ledger.jobs import run_job, seal_from_stream

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:  # a Ledger or Audit stream batch (AWS): seal the tenants whose history grew
        logger.append_keys(job="seal", records=len(event["Records"]))
        result = seal_from_stream(event["Records"])
    else:
        logger.append_keys(job=event.get("job"), tenant_id=event.get("tenant_id"))
        result = run_job(str(event.get("job", "")), event.get("tenant_id") or None, event.get("date") or None)
    logger.info("job finished", tenants=result["tenants"])
    return result
