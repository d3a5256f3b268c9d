"""Provider webhooks /webhooks/{provider} (API.md; no API key: API Gateway Auth NONE). Each delivery is verified by its
HMAC signature and stored with its hash before anything acts on it (moncore.providers.webhooks), then handed to the
receiver of the provider's domain (moncore.providers.registry). The tenant comes from what the event matches (a
check, a transaction we sent the provider), never from a key or the payload alone."""

import base64
import json
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.compliance.kyc import KycService
from moncore.domain.webhooks import SIGNATURE_HEADER
from moncore.http.resolver import handle, make_app
from moncore.http.schemas import Id
from moncore.ledger.card_events import CardEventReceiver
from moncore.ledger.open_banking import OpenBankingService
from moncore.providers import registry
from moncore.providers.webhooks import reject_unknown_provider

logger = Logger()
app = make_app(logger)
kyc = KycService()
card_events = CardEventReceiver()
open_banking = OpenBankingService()

Receiver = Callable[[str, bytes, str | None, str], tuple[int, dict[str, Any]]]
RECEIVERS: dict[str, Receiver] = {
    registry.KYC: kyc.receive_webhook,
    registry.CARDS: card_events.receive_webhook,
    registry.OPEN_BANKING: open_banking.receive_webhook,
}


@app.post("/webhooks/<provider>")
def provider_webhook(provider: Annotated[Id, Path()]) -> Response[str]:
    """200 processed / duplicate / ignored; 404 unknown provider or nothing the event matches (stored: redeliver);
    401 invalid_signature (stored as rejected); 422 malformed (stored as rejected)."""
    event = app.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    correlation_id = str(app.context.get("correlation_id", ""))
    domain = registry.webhook_domain(provider)
    receiver = RECEIVERS.get(domain or "")
    signature = event.get_header_value(SIGNATURE_HEADER)
    if receiver is None:
        reject_unknown_provider(provider, body, signature, correlation_id)
    status, answer = receiver(provider, body, signature, correlation_id)
    return Response(status_code=status, content_type="application/json", body=json.dumps(answer))


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(app, logger, event, context, json_body=False)
