"""Operator tools on the webhook inbox: list a provider's stored deliveries and replay one (docs/providers.md,
"Operator replay").

    GET  /admin/v1/webhook-events?provider=..&status=..&limit&cursor   (any admin role)
    POST /admin/v1/webhook-events/{event_key}/replay                    (operator, admin; audited)

A replay re-runs the stored raw bytes through the receiver of their domain, exactly as a redelivery would, except
that the signature is verified as of the instant it was signed (its HMAC is still checked against the provider's
active secrets; only the 5-minute tolerance is not applied). Everything a receiver does is idempotent, so replaying
an event that was processed (or ignored) changes nothing: the receiver answers `duplicate`. What a replay is for:
an event left RECEIVED or UNMATCHED (processing failed half-way, the ledger refused it until a freeze was lifted,
it arrived before its transaction was written) and a delivery refused only because it came too late
(`timestamp_outside_tolerance`); a delivery refused for its signature or shape can never become valid and is not
replayed (409). Every replay writes an audit event `webhook_event.replayed` with the operator, the correlation id,
the status before and the receiver's answer.

Event keys are the inbox item's key, URL-safe base64 (opaque to callers).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from moncore.domain.audit import PLATFORM_TENANT, audit_event
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.domain.errors import DomainError, InvalidStateTransition, NotFound, ValidationFailed
from moncore.domain.webhooks import signed_timestamp
from moncore.providers import webhooks
from moncore.store import audit as audit_store
from moncore.store import webhooks as inbox
from moncore.store.models import WebhookEventItem

Receiver = Callable[[str, bytes, str | None, str], tuple[int, dict[str, Any]]]
REPLAYABLE_REJECTION = "timestamp_outside_tolerance"
_KEY_PREFIXES = ("_platform#webhook#", "_platform#webhook-rejected#")


def event_key(pk: str) -> str:
    return base64.urlsafe_b64encode(pk.encode()).decode().rstrip("=")


def _pk(key: str) -> str:
    try:
        pk = base64.urlsafe_b64decode((key + "=" * (-len(key) % 4)).encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pk = ""
    if not pk.startswith(_KEY_PREFIXES):
        raise NotFound(f"webhook event {key} not found")
    return pk


def event_view(item: WebhookEventItem) -> dict[str, Any]:
    return {
        "event_key": event_key(item.pk),
        "domain": item.domain,
        "provider": item.provider,
        "event_id": item.event_id,
        "status": item.status,
        "reason": item.reason,
        "body_sha256": item.body_sha256,
        "signed_at": int(item.signed_at) if item.signed_at is not None else signed_timestamp(item.signature),
        "received_at": item.received_at,
        "updated_at": item.updated_at,
        "correlation_id": item.correlation_id,
        "tenant_id": item.tenant_id,
        "subject_id": item.subject_id,
        "outcome": item.outcome,
        "replayed_at": item.replayed_at,
    }


class WebhookEvents:
    def __init__(self, receivers: Mapping[str, Receiver]) -> None:
        self._receivers = receivers

    def list_events(self, *, provider: str, status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        items, next_cursor = inbox.list_for_provider(provider, status=status, limit=limit, cursor=cursor)
        return {"items": [event_view(item) for item in items], "next_cursor": next_cursor}

    def get_event(self, key: str) -> dict[str, Any]:
        return event_view(self._load(_pk(key)))

    def replay(self, caller: Caller, key: str) -> dict[str, Any]:
        """Re-run one stored delivery through its domain's receiver (see the module docstring)."""
        pk = _pk(key)
        item = self._load(pk)
        if item.status == inbox.REJECTED and item.reason != REPLAYABLE_REJECTION:
            raise InvalidStateTransition(
                f"this delivery was refused ({item.reason}): a replay cannot make it valid; only late deliveries "
                f"({REPLAYABLE_REJECTION}) and accepted events are replayed"
            )
        signed_at = int(item.signed_at) if item.signed_at is not None else signed_timestamp(item.signature)
        receiver = self._receivers.get(item.domain)
        if signed_at is None or receiver is None:
            raise ValidationFailed(f"the {item.domain} event {item.event_id} cannot be replayed here")
        before = item.status
        with webhooks.replaying(signed_at):
            try:
                status, answer = receiver(item.provider, bytes(item.raw_body), item.signature, caller.correlation_id)
            except DomainError as refused:
                status, answer = refused.status, {"code": refused.code, "detail": refused.detail}
        now = now_rfc3339()
        inbox.mark_replayed(pk, now)
        after = self._load(pk)
        # A late delivery replayed is stored (or found) as an accepted event under its provider event id.
        event_id = item.event_id or (str(answer["event_id"]) if answer.get("event_id") else None)
        accepted = inbox.find(inbox.event_key(item.domain, item.provider, event_id)) if event_id else None
        result = {
            "event_key": key,
            "provider": item.provider,
            "event_id": event_id,
            "status_before": before,
            "status_after": (accepted or after).status,
            "http_status": status,
            "answer": answer,
            "replayed_at": now,
        }
        audit_store.append(
            audit_event(
                tenant_id=(accepted or after).tenant_id or PLATFORM_TENANT,
                action="webhook_event.replayed",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=event_id or pk,
                payload={**result, "domain": item.domain, "body_sha256": item.body_sha256},
            )
        )
        return result

    @staticmethod
    def _load(pk: str) -> WebhookEventItem:
        item = inbox.find(pk)
        if item is None:
            raise NotFound("webhook event not found")
        return item
