"""The webhook inbox: every delivery stored before anything acts on it (docs/kyc.md, "Webhook inbox").

Verified events are keyed by (domain, provider, provider event id): the first delivery creates the item with a
conditional put, a redelivery finds it. Refused attempts (bad signature, unknown provider, malformed) get an item of
their own under a fresh id and expire after REJECTED_TTL. Keys carry the platform partition (`_platform#...`): a
delivery belongs to no tenant until it is matched, and the tenant it was matched to is an attribute.
"""

from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import PutError
from pynamodb.expressions.update import Action

from moncore.domain.audit import PLATFORM_TENANT
from moncore.store import cursors
from moncore.store.models import WebhookEventItem, tenant_key

RECEIVED = "RECEIVED"  # stored, not (yet) fully processed: a redelivery processes it again
PROCESSED = "PROCESSED"  # acted on: final
IGNORED = "IGNORED"  # a kind of event the kernel does not act on, or about a check already decided: final
UNMATCHED = "UNMATCHED"  # no check for it (yet): a redelivery tries again
REJECTED = "REJECTED"  # refused before acting (signature, provider, shape): final
FINAL = frozenset({PROCESSED, IGNORED, REJECTED})
REJECTED_TTL_S = 90 * 86_400


def event_key(domain: str, provider: str, event_id: str) -> str:
    return tenant_key(PLATFORM_TENANT, "webhook", domain, provider, event_id)


def rejected_key(domain: str, provider: str, attempt_id: str) -> str:
    return tenant_key(PLATFORM_TENANT, "webhook-rejected", domain, provider, attempt_id)


def receive(item: WebhookEventItem) -> tuple[WebhookEventItem, bool]:
    """Store a verified event once: (the stored item, True) on its first delivery, (the item stored before, False)
    on a redelivery, which changes nothing."""
    try:
        item.save(condition=WebhookEventItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return WebhookEventItem.get(item.pk, consistent_read=True), False
    return item, True


def store_rejected(item: WebhookEventItem) -> None:
    """A refused attempt: its own item (a fresh attempt id, so it never overwrites anything), expiring."""
    item.expires_at = int(time.time()) + REJECTED_TTL_S
    item.save(condition=WebhookEventItem.pk.does_not_exist())


def settle(
    item: WebhookEventItem,
    status: str,
    at: str,
    *,
    reason: str | None = None,
    tenant_id: str | None = None,
    subject_id: str | None = None,
    outcome: dict[str, Any] | None = None,
) -> None:
    """Record what processing did. Only the item's own status moves; the raw body and its hash never change."""
    actions: list[Action] = [WebhookEventItem.status.set(status), WebhookEventItem.updated_at.set(at)]
    if reason is not None:
        actions.append(WebhookEventItem.reason.set(reason))
    if tenant_id is not None:
        actions.append(WebhookEventItem.tenant_id.set(tenant_id))
    if subject_id is not None:
        actions.append(WebhookEventItem.subject_id.set(subject_id))
    if outcome is not None:
        actions.append(WebhookEventItem.outcome.set(outcome))
    item.update(actions=actions)


def mark_replayed(pk: str, at: str) -> None:
    """Remember the last operator replay on the item (its raw body, hash and status are untouched here)."""
    WebhookEventItem(pk).update(actions=[WebhookEventItem.replayed_at.set(at)], condition=WebhookEventItem.pk.exists())


def list_for_provider(
    provider: str, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[WebhookEventItem], str | None]:
    """A provider's deliveries newest first, optionally only those in `status` (filtered pages may be short)."""
    names = ("pk", "provider", "received_at")
    start = cursors.decode(cursor, names=names, scope_name="provider", scope_value=provider) if cursor else None
    result = WebhookEventItem.by_provider.query(
        provider,
        filter_condition=None if status is None else WebhookEventItem.status == status,
        limit=limit,
        last_evaluated_key=start,
        scan_index_forward=False,
    )
    items = list(result)
    last = result.last_evaluated_key
    return items, (cursors.encode(last) if last else None)


def find(pk: str) -> WebhookEventItem | None:
    try:
        return WebhookEventItem.get(pk, consistent_read=True)
    except WebhookEventItem.DoesNotExist:
        return None
