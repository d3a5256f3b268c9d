"""Card processor webhooks (docs/providers.md, "Cards"): POST /webhooks/{provider} for the card domain.

    delivery -> the webhook inbox (signature, 5 min tolerance, stored with its SHA-256 before anything acts on it,
                deduplicated by provider event id; moncore.providers.webhooks)
             -> the processor adapter reads its own wire format (ProcessorEvent)
             -> the card it names (issuer token -> card, under the platform partition); the tenant is the card's,
                and only if that tenant's configured processor is this provider (else 404, UNMATCHED)
             -> moncore.ledger.provider_events (its own inbox: parking, the processor's sequence, op ids derived
                from the event id) -> compliance and the ledger, or the shadow clearing record
             <- 200 the adapter's answer: for an authorisation `approved` true/false with the decline reason

A redelivery of a delivery already processed answers the first outcome again (status `duplicate`), so the processor
always hears the same decision. A decline (and any rejected event) is recorded: the provider-event inbox keeps its
code, the webhook inbox its outcome, and an audit event `card.authorization_declined` / `card.event_rejected` is
written; nothing is posted for it.

Errors (raised, mapped to problem+json): InvalidSignature 401, NotFound 404 (unknown provider, unknown card: stored,
a redelivery is processed again), ValidationFailed 422 (malformed; an event the kernel refuses to read).
"""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import NotFound, ValidationFailed
from moncore.ledger.provider_events import (
    SHADOW_OUTCOME,
    Applied,
    CardEvent,
    CardEventKind,
    Outcome,
    ProviderEventService,
)
from moncore.providers import webhooks
from moncore.providers.cards import CardProcessor, ProcessorEvent, ProcessorEventKind, card_processor, known_processor
from moncore.store import audit as audit_store
from moncore.store import cards as card_store
from moncore.store import webhooks as inbox
from moncore.store.models import CardTokenItem, WebhookEventItem
from moncore.tenancy.service import TenancyService

DOMAIN = "cards"
_KINDS: dict[ProcessorEventKind, CardEventKind] = {
    ProcessorEventKind.AUTHORIZATION: CardEventKind.AUTHORIZATION,
    ProcessorEventKind.INCREMENT: CardEventKind.INCREMENT,
    ProcessorEventKind.CLEARING: CardEventKind.CAPTURE,
    ProcessorEventKind.REVERSAL: CardEventKind.REVERSAL,
    ProcessorEventKind.REFUND: CardEventKind.REFUND,
}
_DECIDED = (CardEventKind.AUTHORIZATION, CardEventKind.INCREMENT)  # the processor waits for approved / declined


class CardEventReceiver:
    def __init__(self, tenancy: TenancyService | None = None, events: ProviderEventService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._events = events or ProviderEventService(self._tenancy)

    def receive_webhook(
        self, provider: str, raw_body: bytes, signature: str | None, correlation_id: str, *, now_s: int | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One delivery to /webhooks/{provider}: (HTTP status, body). Refusals raise (see the module docstring)."""
        delivery = webhooks.Delivery(DOMAIN, provider, raw_body, signature, correlation_id)
        received = webhooks.receive(
            delivery,
            known_provider=known_processor,
            event_id_of=lambda payload: card_processor(provider).parse_event(payload).event_id,
            now_s=now_s,
        )
        processor = card_processor(provider)
        event = processor.parse_event(received.payload)
        if received.settled:
            first = dict(received.item.outcome or {})
            return 200, processor.answer(event, first | {"status": "duplicate"})
        return self._process(received.item, processor, provider, event, correlation_id)

    def _process(
        self,
        record: WebhookEventItem,
        processor: CardProcessor,
        provider: str,
        event: ProcessorEvent,
        correlation_id: str,
    ) -> tuple[int, dict[str, Any]]:
        kind = _KINDS.get(event.kind)
        if kind is None:
            reason = "event type not acted on"
            inbox.settle(record, inbox.IGNORED, now_rfc3339(), reason=reason)
            return 200, processor.answer(event, {"status": "ignored", "reason": reason})
        card = self._card(provider, event.card_token)
        if card is None:
            reason = "no card of a tenant using this processor has this token"
            inbox.settle(record, inbox.UNMATCHED, now_rfc3339(), reason=reason)
            raise NotFound(f"{reason}: stored; redeliver it if the card was only just issued")
        authorization = kind is CardEventKind.AUTHORIZATION
        card_event = CardEvent(
            provider=provider,
            event_id=event.event_id,
            kind=kind,
            authorization_ref=event.authorization_ref,
            amount_minor=event.amount_minor,
            currency=event.currency,
            account_id=card.account_id if authorization else None,
            hold_expires_at=event.expires_at if authorization else None,
            card_id=card.card_id,
            merchant_country=event.merchant_country if authorization else None,
            sequence=event.sequence,
            final=event.final,
            correlation_id=correlation_id,
        )
        try:
            applied = self._events.apply(card.tenant_id, card_event)
        except ValidationFailed as refused:
            inbox.settle(record, inbox.IGNORED, now_rfc3339(), reason=refused.detail[:500], tenant_id=card.tenant_id)
            raise
        outcome = _outcome(kind, card, applied)
        if applied.outcome is Outcome.REJECTED:
            self._audit_rejection(card, card_event, applied, correlation_id)
        inbox.settle(
            record, inbox.PROCESSED, now_rfc3339(), tenant_id=card.tenant_id, subject_id=applied.txn_id, outcome=outcome
        )
        return 200, processor.answer(event, outcome)

    def _card(self, provider: str, token: str) -> CardTokenItem | None:
        """The card the token belongs to, if its tenant uses this processor (tenant isolation: the token only says
        where to look). Its status is checked by the authorisation itself (and is a condition of its posting)."""
        found = card_store.find_token(provider, token)
        if found is None or self._tenancy.tenant_config(found.tenant_id).card_processor != provider:
            return None
        return found

    @staticmethod
    def _audit_rejection(card: CardTokenItem, event: CardEvent, applied: Applied, correlation_id: str) -> None:
        declined = event.kind in _DECIDED
        audit_store.append(
            audit_event(
                tenant_id=card.tenant_id,
                action="card.authorization_declined" if declined else "card.event_rejected",
                actor=f"provider:{event.provider}",
                correlation_id=correlation_id,
                subject_id=applied.txn_id,
                payload={
                    "card_id": card.card_id,
                    "provider": event.provider,
                    "event_id": event.event_id,
                    "kind": event.kind.value,
                    "authorization_ref": event.authorization_ref,
                    "amount_minor": event.amount_minor,
                    "currency": event.currency,
                    "code": applied.reason,
                    "posted": False,
                },
            )
        )


def _outcome(kind: CardEventKind, card: CardTokenItem, applied: Applied) -> dict[str, Any]:
    """What processing did, as stored in the webhook inbox and answered (through the adapter) to the processor."""
    outcome = applied.outcome
    if outcome is Outcome.DUPLICATE:  # its provider-event record was closed before (a failure half-way)
        if applied.first_status == "REJECTED":
            outcome = Outcome.REJECTED
        else:
            outcome = Outcome.RECORDED if applied.reason == SHADOW_OUTCOME else Outcome.APPLIED
    body: dict[str, Any] = {
        "status": "processed",
        "outcome": outcome.value,
        "code": applied.reason if outcome is Outcome.REJECTED else None,
        "txn_id": applied.txn_id,
        "card_id": card.card_id,
    }
    if kind in _DECIDED:
        body["decision"] = {Outcome.APPLIED: "approved", Outcome.REJECTED: "declined"}.get(outcome, "pending")
    return body
