"""Card ports: the card ISSUER (issue, freeze, unfreeze, close a card) and the card PROCESSOR (authorisation,
incremental authorisation, clearing, authorisation reversal and refund events, delivered by signed webhook to
POST /webhooks/{provider}), and the sandbox adapter that implements both (docs/providers.md, "Cards").

The kernel depends on these ports only:
- `CardIssuer`: calls answered at once (the issuer's token, last four digits and expiry; never a PAN). A failure is
  ProviderUnavailable (retryable): the issuer's reference derives from our card id, so a retry finds the same card.
- `CardProcessor`: `parse_event` reads one of the provider's own webhook payloads (after the inbox verified its
  signature) into a `ProcessorEvent`; `answer` turns the kernel's outcome into the body the provider expects back
  (for an authorisation: approved or declined, with the reason). Each adapter owns its wire format, so swapping
  providers changes no kernel code.
Which adapters a tenant uses is tenant configuration (`card_issuer`, `card_processor`), never the environment.

The sandbox adapter (`sandbox_cards`) behaves like a real issuer-processor's test mode:
- its token, last four digits and expiry derive from our card id (an idempotent API: a retry finds the same card);
- `SandboxCardNetwork` builds the webhooks a card's payments produce, in the provider's own wire format, numbered per
  authorisation (`sequence`), and `schedule` lays them out for delivery: in any order, each twice (duplicates), or
  signed long ago (a late redelivery outside the signature tolerance); tests and demos sign them with
  `domain.webhooks.signature_header` and POST them to /webhooks/sandbox_cards;
- outages on demand: `SandboxCards.plan_outage(tenant_id, operation, calls)` makes the next `calls` issuer calls of
  `operation` (issue, freeze, unfreeze, close) for that tenant fail with ProviderUnavailable, as a provider outage
  would. The plan is the simulated provider's own state (kept in the Cards table under `_sandbox#`).

Errors: ProviderUnavailable (retryable), ValidationFailed (unknown adapter, malformed event).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from moncore.domain.clock import now_rfc3339, utc_now
from moncore.domain.errors import ProviderUnavailable, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.providers import registry
from moncore.providers.plugins import Adapters
from moncore.store import cards as card_store


# ------------------------------------------------------------------------------------------------ issuer port
@dataclass(frozen=True, slots=True)
class IssueCardRequest:
    tenant_id: str
    card_id: str  # ours: the issuer dedupes on it, so a retried call never issues a second card
    user_id: str
    cardholder_name: str
    currency: str

    @property
    def reference(self) -> str:
        return f"{self.tenant_id}:{self.card_id}"


@dataclass(frozen=True, slots=True)
class IssuedCard:
    provider: str
    token: str  # the issuer's id of the card; processor events name it
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class CardRef:
    """What an issuer needs to change a card it issued."""

    tenant_id: str
    card_id: str
    token: str


class CardIssuer(Protocol):
    name: str

    def issue_card(self, request: IssueCardRequest) -> IssuedCard: ...

    def freeze_card(self, card: CardRef) -> None: ...

    def unfreeze_card(self, card: CardRef) -> None: ...

    def close_card(self, card: CardRef) -> None: ...


# ------------------------------------------------------------------------------------------------ processor port
class ProcessorEventKind(StrEnum):
    AUTHORIZATION = "authorization"
    INCREMENT = "incremental_authorization"
    CLEARING = "clearing"
    REVERSAL = "reversal"  # authorisation reversal: releases `amount_minor` of the hold
    REFUND = "refund"
    OTHER = "other"  # stored and ignored


@dataclass(frozen=True, slots=True)
class ProcessorEvent:
    """A processor webhook, normalised."""

    event_id: str
    kind: ProcessorEventKind
    card_token: str
    authorization_ref: str  # the network's id of the authorisation every later event refers to
    amount_minor: int
    currency: str
    sequence: int | None = None  # the processor's order of the events of one authorisation (1 = authorisation)
    final: bool = False  # clearing: the last one of the authorisation (the rest of the hold is released)
    merchant_name: str | None = None
    merchant_country: str | None = None
    expires_at: str | None = None  # authorisation: until when the scheme keeps it


class CardProcessor(Protocol):
    name: str

    def parse_event(self, payload: Mapping[str, Any]) -> ProcessorEvent: ...

    def answer(self, event: ProcessorEvent, outcome: Mapping[str, Any]) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------------------ sandbox
_WIRE_TYPES: dict[str, ProcessorEventKind] = {
    "authorization.request": ProcessorEventKind.AUTHORIZATION,
    "authorization.incremental": ProcessorEventKind.INCREMENT,
    "authorization.reversal": ProcessorEventKind.REVERSAL,
    "clearing": ProcessorEventKind.CLEARING,
    "refund": ProcessorEventKind.REFUND,
}
WIRE_TYPE: dict[ProcessorEventKind, str] = {kind: wire for wire, kind in _WIRE_TYPES.items()}
OUTAGE_OPERATIONS = ("issue", "freeze", "unfreeze", "close")


class SandboxCards:
    """Simulated issuer-processor. Issuer calls answer at once (or fail as planned by `plan_outage`); processor events
    come as signed webhooks built by SandboxCardNetwork, read back by parse_event."""

    name = "sandbox_cards"

    # ---- issuer
    def issue_card(self, request: IssueCardRequest) -> IssuedCard:
        self._maybe_fail("issue", request.tenant_id)
        token = self.token(request.tenant_id, request.card_id)
        digest = hashlib.sha256(token.encode()).digest()
        issued_at = utc_now()
        return IssuedCard(
            provider=self.name,
            token=token,
            last4=f"{int.from_bytes(digest[:4], 'big') % 10_000:04d}",
            exp_month=issued_at.month,
            exp_year=issued_at.year + 3,
        )

    def freeze_card(self, card: CardRef) -> None:
        self._maybe_fail("freeze", card.tenant_id)

    def unfreeze_card(self, card: CardRef) -> None:
        self._maybe_fail("unfreeze", card.tenant_id)

    def close_card(self, card: CardRef) -> None:
        self._maybe_fail("close", card.tenant_id)

    @staticmethod
    def token(tenant_id: str, card_id: str) -> str:
        return derived_id("sbxcard", tenant_id, card_id)

    @classmethod
    def plan_outage(cls, tenant_id: str, operation: str, calls: int = 1) -> None:
        """The next `calls` issuer calls of `operation` for the tenant fail (ProviderUnavailable)."""
        if operation not in OUTAGE_OPERATIONS:
            raise ValueError(f"operation must be one of {OUTAGE_OPERATIONS}")
        card_store.plan_faults(cls.name, operation, tenant_id, calls)

    def _maybe_fail(self, operation: str, tenant_id: str) -> None:
        if card_store.take_fault(self.name, operation, tenant_id):
            raise ProviderUnavailable(f"the card issuer is unavailable ({operation}); retry")

    # ---- processor
    def parse_event(self, payload: Mapping[str, Any]) -> ProcessorEvent:
        event_id, wire_type = payload.get("id"), payload.get("type")
        if not _text(event_id) or not _text(wire_type):
            raise _malformed("id and type are required")
        card, authorization, amount = (_section(payload, name) for name in ("card", "authorization", "amount"))
        token, reference = card.get("token"), authorization.get("id")
        value, currency = amount.get("value_minor"), amount.get("currency")
        if not _text(token) or not _text(reference):
            raise _malformed("card.token and authorization.id are required")
        if isinstance(value, bool) or not isinstance(value, int) or not _text(currency):
            raise _malformed("amount.value_minor (integer minor units) and amount.currency are required")
        sequence = payload.get("sequence")
        if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1):
            raise _malformed("sequence must be a positive integer")
        merchant = _section(payload, "merchant")
        final = _section(payload, "clearing").get("final", False)
        if not isinstance(final, bool):
            raise _malformed("clearing.final must be a boolean")
        expires_at = authorization.get("expires_at")
        return ProcessorEvent(
            event_id=str(event_id),
            kind=_WIRE_TYPES.get(str(wire_type), ProcessorEventKind.OTHER),
            card_token=str(token),
            authorization_ref=str(reference),
            amount_minor=value,
            currency=str(currency),
            sequence=sequence,
            final=final,
            merchant_name=_optional_text(merchant.get("name")),
            merchant_country=_optional_text(merchant.get("country")),
            expires_at=_optional_text(expires_at),
        )

    def answer(self, event: ProcessorEvent, outcome: Mapping[str, Any]) -> dict[str, Any]:
        """What the sandbox processor expects back: for an authorisation (or an increment) whether it is approved."""
        body: dict[str, Any] = {"id": event.event_id, "authorization": {"id": event.authorization_ref}}
        if event.kind in (ProcessorEventKind.AUTHORIZATION, ProcessorEventKind.INCREMENT):
            body["approved"] = outcome.get("decision") == "approved"
            body["decline_reason"] = None if body["approved"] else outcome.get("code")
        return body | {"result": dict(outcome)}


def _section(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = payload.get(name, {})
    if not isinstance(section, Mapping):
        raise _malformed(f"{name} must be an object")
    return section


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    if not _text(value):
        raise _malformed("text fields are 1 to 200 characters")
    return str(value)


def _malformed(detail: str) -> ValidationFailed:
    return ValidationFailed(f"malformed card event: {detail}", errors=[{"loc": ["body"], "msg": detail}])


# ------------------------------------------------------------------------------------------------ sandbox network
@dataclass
class SandboxCardNetwork:
    """The sandbox processor's side of one card: the webhooks its payments produce, in the provider's wire format.

        network = SandboxCardNetwork(card_token, "EUR")
        auth = network.authorization(10_000, merchant_country="FR")  # a new authorisation, sequence 1
        events = [auth, network.increment(auth, 2_000), network.clearing(auth, 6_000),
                  network.clearing(auth, 5_000, final=True)]   # sequences 2, 3, 4 of the same authorisation

    Every event has a fresh provider event id; `sequence` numbers the events of one authorisation in the order the
    processor produced them (the kernel applies them in that order, whatever the delivery order)."""

    card_token: str
    currency: str = "EUR"
    _sequences: dict[str, itertools.count[int]] = field(default_factory=dict)

    def authorization(
        self,
        amount_minor: int,
        *,
        merchant_country: str | None = "FR",
        merchant_name: str = "Sandbox Shop",
        expires_at: str | None = None,
        authorization_ref: str | None = None,
    ) -> dict[str, Any]:
        reference = authorization_ref or f"sbxauth_{uuid.uuid4().hex}"
        self._sequences[reference] = itertools.count(1)
        event = self._event("authorization.request", reference, amount_minor)
        event["merchant"] = {"name": merchant_name, "country": merchant_country, "mcc": "5999"}
        if merchant_country is None:
            del event["merchant"]["country"]
        if expires_at is not None:
            event["authorization"]["expires_at"] = expires_at
        return event

    def increment(self, authorization: Mapping[str, Any], amount_minor: int) -> dict[str, Any]:
        return self._event("authorization.incremental", _ref(authorization), amount_minor)

    def clearing(self, authorization: Mapping[str, Any], amount_minor: int, *, final: bool = False) -> dict[str, Any]:
        event = self._event("clearing", _ref(authorization), amount_minor)
        event["clearing"] = {"final": final}
        return event

    def reversal(self, authorization: Mapping[str, Any], amount_minor: int) -> dict[str, Any]:
        return self._event("authorization.reversal", _ref(authorization), amount_minor)

    def refund(self, authorization: Mapping[str, Any], amount_minor: int) -> dict[str, Any]:
        return self._event("refund", _ref(authorization), amount_minor)

    def _event(self, wire_type: str, reference: str, amount_minor: int) -> dict[str, Any]:
        counter = self._sequences.setdefault(reference, itertools.count(1))
        return {
            "id": f"sbxevt_{uuid.uuid4().hex}",
            "type": wire_type,
            "created_at": now_rfc3339(),
            "sequence": next(counter),
            "card": {"token": self.card_token},
            "authorization": {"id": reference},
            "amount": {"value_minor": amount_minor, "currency": self.currency},
        }


def _ref(authorization: Mapping[str, Any]) -> str:
    return str(authorization["authorization"]["id"])


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery: the raw body and the unix time its signature carries."""

    body: bytes
    signed_at_s: int


def schedule(
    events: Sequence[Mapping[str, Any]],
    *,
    order: Sequence[int] | None = None,
    duplicates: bool = False,
    signed_ago_s: int = 0,
) -> list[Delivery]:
    """Lay events out for delivery: in `order` (indexes into events; default as given), each delivered twice when
    `duplicates` (the redeliveries after all first deliveries, in reverse), signed `signed_ago_s` seconds ago (beyond
    the 300 s tolerance: a late redelivery the kernel refuses with 401). The same event always has the same bytes."""
    chosen = [events[i] for i in (order if order is not None else range(len(events)))]
    at = int(time.time()) - signed_ago_s
    bodies = [json.dumps(event, sort_keys=True).encode() for event in chosen]
    if duplicates:
        bodies += list(reversed(bodies))
    return [Delivery(body, at) for body in bodies]


def settlement_report(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The sandbox processor's settlement report of `events`: its clearings and refunds (what reconciliation matches
    against the kernel's clearing records)."""
    return [
        {
            "event_id": event["id"],
            "kind": "clearing" if event["type"] == "clearing" else "refund",
            "amount_minor": event["amount"]["value_minor"],
            "currency": event["amount"]["currency"],
        }
        for event in events
        if event["type"] in ("clearing", "refund")
    ]


# ------------------------------------------------------------------------------------------------ registry
DEFAULT_CARD_PROVIDER = SandboxCards.name
_SANDBOX = SandboxCards()
ISSUERS: Adapters[CardIssuer] = Adapters("card issuer", "card_issuer", [(SandboxCards.name, _SANDBOX)])
PROCESSORS: Adapters[CardProcessor] = Adapters("card processor", "card_processor", [(SandboxCards.name, _SANDBOX)])


def register_issuer(adapter: CardIssuer) -> None:
    """Make an issuer adapter selectable as a tenant's `card_issuer` (providers/plugins.py loads the modules that
    call this)."""
    ISSUERS.register(adapter.name, adapter)


def register_processor(adapter: CardProcessor) -> None:
    """Make a processor adapter selectable as a tenant's `card_processor` and route /webhooks/<its name> to the
    card event receiver."""
    registry.register(adapter.name, registry.CARDS)
    PROCESSORS.register(adapter.name, adapter)


def card_issuer(name: str) -> CardIssuer:
    return ISSUERS.get(name)


def card_processor(name: str) -> CardProcessor:
    return PROCESSORS.get(name)


def known_processor(name: str) -> bool:
    return PROCESSORS.known(name)
