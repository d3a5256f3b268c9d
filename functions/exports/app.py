"""Exports state machine tasks (statemachines/exports.asl.json): build an export's evidence bundle, or record its
failure. One step, one kernel call; errors raise so the state machine's Retry / Catch see them by class name
(SealPending is retried)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.audit.exports import ExportService
from moncore.domain.errors import ValidationFailed

logger = Logger()
exports = ExportService()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = event.get("step")
    logger.append_keys(step=step, export_id=event.get("export_id"))
    if step == "build":
        return exports.build(str(event["export_id"]))
    if step == "fail":
        return exports.fail(str(event["export_id"]), dict(event.get("error") or {}))
    raise ValidationFailed(f"unknown exports step {step!r}")
