"""The webhook inbox every provider callback goes through (issue 5 item 2; KYC is its first user, docs/kyc.md).

    delivery -> known provider? -> signature (HMAC over "t.body", 5 min tolerance, two active secrets)
             -> JSON with a provider event id -> stored with the SHA-256 of its raw bytes -> handed to the domain

Nothing acts on a delivery before it is stored: a refused one (unknown provider, bad signature, late, malformed) is
stored as a REJECTED attempt and answered 404 / 401 `invalid_signature` / 422 (503 `webhook_not_configured`, retryable,
for a signed delivery from a provider that has no active secret yet); an accepted one is stored once per
provider event id, so a redelivery finds the first and changes nothing (the domain decides whether a non-final
first delivery, e.g. one whose processing failed half-way, is processed again). Secrets come from one Secrets
Manager secret, a JSON object {provider: "secret" | ["newest", "being retired"]}, re-read after
WebhookSecretCacheSeconds.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

from moncore.config import settings
from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import (
    AlreadyExists,
    InvalidSignature,
    InvariantViolation,
    NotFound,
    ValidationFailed,
    WebhookNotConfigured,
)
from moncore.domain.ids import new_id
from moncore.domain.webhooks import MAX_ACTIVE_SECRETS, parse_signature_header, verify_signature
from moncore.store import webhooks as inbox
from moncore.store.models import WebhookEventItem
from moncore.store.secrets import secret_json


@dataclass(frozen=True, slots=True)
class Delivery:
    domain: str  # kyc, ...
    provider: str  # from the route: /webhooks/<provider> (provider names are unique across domains)
    raw_body: bytes
    signature: str | None  # the MonCore-Signature header
    correlation_id: str


@dataclass(frozen=True, slots=True)
class Received:
    item: WebhookEventItem  # the stored event (the first delivery's, on a redelivery)
    payload: dict[str, Any]
    first_delivery: bool

    @property
    def settled(self) -> bool:
        """Processed (or ignored) before: a redelivery that must change nothing."""
        return self.item.status in inbox.FINAL


# Set only while an operator replays a stored delivery (moncore.providers.replay): the signature is verified as of
# the instant it was signed, so the old timestamp passes the tolerance while the HMAC is still checked.
_REPLAY_AT: ContextVar[int | None] = ContextVar("webhook_replay_at", default=None)


@contextmanager
def replaying(signed_at_s: int) -> Iterator[None]:
    """Run a domain receiver on a stored delivery as of its signing instant (operator replay only)."""
    token = _REPLAY_AT.set(signed_at_s)
    try:
        yield
    finally:
        _REPLAY_AT.reset(token)


def active_secrets(provider: str) -> tuple[str, ...]:
    """The provider's active webhook secrets, newest first (at most MAX_ACTIVE_SECRETS). WebhookNotConfigured when
    the secret document has none (or not 1-2 non-empty strings) for it: an operator's step is missing."""
    config = secret_json(settings().webhook_secrets_secret, max_age_s=settings().webhook_secret_cache_seconds)
    value = config.get(provider)
    found = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list) else ()
    if not 1 <= len(found) <= MAX_ACTIVE_SECRETS or not all(isinstance(s, str) and s for s in found):
        raise WebhookNotConfigured(
            f"no active webhook secret is configured for {provider}: the delivery cannot be verified; redeliver later"
        )
    return found


def receive(
    delivery: Delivery,
    *,
    known_provider: Callable[[str], bool],
    event_id_of: Callable[[Mapping[str, Any]], str],
    now_s: int | None = None,
) -> Received:
    """Verify and store one delivery (see the module docstring). Raises NotFound (unknown provider),
    InvalidSignature, ValidationFailed (not JSON, no event id) or AlreadyExists (an event id delivered before with
    other bytes: the first delivery stands); each after storing the attempt as REJECTED."""
    received_at = now_rfc3339()
    body_sha256 = hashlib.sha256(delivery.raw_body).hexdigest()

    def rejected(reason: str, event_id: str | None = None) -> None:
        inbox.store_rejected(
            _item(
                delivery,
                inbox.rejected_key(delivery.domain, delivery.provider, new_id("whr")),
                inbox.REJECTED,
                body_sha256,
                received_at,
                reason=reason,
                event_id=event_id,
            )
        )

    if not known_provider(delivery.provider):
        rejected("unknown_provider")
        raise NotFound(f"no {delivery.domain} provider named '{delivery.provider}'")
    try:
        # The header first: an unsigned or malformed delivery is refused (401) whatever secrets are configured.
        parse_signature_header(delivery.signature)
        verified = verify_signature(
            delivery.signature,
            delivery.raw_body,
            active_secrets(delivery.provider),
            now_s=now_s if now_s is not None else (_REPLAY_AT.get() or int(time.time())),
        )
    except InvalidSignature as refused:
        rejected(refused.reason)
        raise
    except WebhookNotConfigured:
        rejected("no_active_secret")
        raise
    try:
        payload = json.loads(delivery.raw_body)
        if not isinstance(payload, dict):
            raise ValidationFailed("the event must be a JSON object")
        event_id = event_id_of(payload)
    except (ValueError, UnicodeDecodeError, RecursionError, ValidationFailed) as error:
        rejected("malformed")
        if isinstance(error, ValidationFailed):
            raise
        raise ValidationFailed("the event is not valid UTF-8 JSON", errors=[{"loc": ["body"], "msg": "JSON"}]) from None
    item = _item(
        delivery,
        inbox.event_key(delivery.domain, delivery.provider, event_id),
        inbox.RECEIVED,
        body_sha256,
        received_at,
        event_id=event_id,
        signed_at=verified.timestamp_s,
        secret_index=verified.secret_index,
    )
    stored, first = inbox.receive(item)
    if not first and stored.body_sha256 != body_sha256:
        rejected("body_conflict", event_id)
        raise AlreadyExists(
            f"event {event_id} was delivered before with another body; the first delivery stands",
            errors=[{"loc": ["body", "id"], "msg": "same event id, different body"}],
        )
    return Received(stored, payload, first)


def reject_unknown_provider(provider: str, raw_body: bytes, signature: str | None, correlation_id: str) -> NoReturn:
    """A delivery for a provider no domain knows: stored as a rejected attempt, answered 404 (NotFound)."""
    receive(
        Delivery("unknown", provider, raw_body, signature, correlation_id),
        known_provider=lambda _: False,
        event_id_of=lambda _: "",
    )
    raise InvariantViolation("receive() accepted a delivery from an unknown provider")


def _item(
    delivery: Delivery,
    pk: str,
    status: str,
    body_sha256: str,
    received_at: str,
    *,
    reason: str | None = None,
    event_id: str | None = None,
    signed_at: int | None = None,
    secret_index: int | None = None,
) -> WebhookEventItem:
    return WebhookEventItem(
        pk,
        domain=delivery.domain,
        provider=delivery.provider,
        event_id=event_id,
        status=status,
        reason=reason,
        raw_body=delivery.raw_body,
        body_sha256=body_sha256,
        signature=(delivery.signature or "")[:1024] or None,
        signed_at=signed_at,
        secret_index=secret_index,
        received_at=received_at,
        updated_at=received_at,
        correlation_id=delivery.correlation_id,
    )
