"""Provider webhooks /v1/webhooks/... (no API key: API Gateway Auth NONE). Each delivery is verified by its HMAC
signature, stored with its hash before anything acts on it, then handed to one kernel service. The tenant comes from
the matched check, never from a key or the payload alone (docs/kyc.md)."""

import base64
import json
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.compliance.kyc import KycService
from moncore.domain.webhooks import SIGNATURE_HEADER
from moncore.http.resolver import handle, make_app
from moncore.http.schemas import Id

logger = Logger()
app = make_app(logger)
kyc = KycService()


@app.post("/v1/webhooks/kyc/<provider>")
def kyc_webhook(provider: Annotated[Id, Path()]) -> Response[str]:
    """200 processed / duplicate / ignored; 404 unknown provider or no matching check (stored: redeliver);
    401 invalid_signature (stored as rejected); 422 malformed (stored as rejected)."""
    event = app.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    status, answer = kyc.receive_webhook(
        provider, body, event.get_header_value(SIGNATURE_HEADER), str(app.context.get("correlation_id", ""))
    )
    return Response(status_code=status, content_type="application/json", body=json.dumps(answer))


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(app, logger, event, context, json_body=False)
