"""Settlement state machine tasks (statemachines/settlement.asl.json). One step, one kernel call; errors raise so
the state machine's Retry / Catch see them by class name."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.domain.errors import ValidationFailed
from moncore.domain.settlement import SettlementBatch
from moncore.settlement.service import SettlementService

logger = Logger()
settlement = SettlementService()


@logger.inject_lambda_context(correlation_id_path="correlation_id")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    step = event.get("step")
    correlation_id = str(event.get("correlation_id") or context.aws_request_id)
    if step == "plan":
        return settlement.plan(event.get("tenant_id"), event.get("date"))
    if step == "settle":
        return settlement.settle(SettlementBatch(**event["batch"]), correlation_id=correlation_id)
    if step == "summarize":
        return settlement.summarize(event["date"], event["results"], correlation_id)
    raise ValidationFailed(f"unknown settlement step {step!r}")
