"""Card clearings and refunds: posted while the capability `card_clearing` is live, computed and recorded but not
posted while it is not (shadow), and a clearing record either way for reconciliation (docs/providers.md, "Cards").

Live: a clearing is a capture of its amount on the authorisation's hold, and the final clearing releases the rest;
a refund is a linked reversal (money back to the card account). The clearing record names the ledger events.

Shadow (card_clearing `shadow`, or `disabled` before the issuer onboarded the tenant): the same steps are planned,
against the ledger's state plus the earlier shadow clearings of the same authorisation (kept as shadow totals), and
recorded with the legs they would post, the provider reference and the mode; the ledger does not move, so the hold
stays AUTHORIZED until the processor reverses it or it expires (the expiry sweep releases it). Switching to live
needs no migration: the next clearing posts; a hold cleared only in shadow is never posted retroactively.

Errors: what the lifecycle raises for a step it cannot take (InvalidStateTransition, ValidationFailed, NotFound),
ConcurrencyConflict (retryable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.canonical import sha256_hex
from moncore.domain.capabilities import Capability, Mode
from moncore.domain.cards import (
    ClearingLine,
    ShadowTotals,
    legs_record,
    reconcile,
    shadow_clearing_steps,
    shadow_refund_step,
    step_legs,
    steps_record,
)
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity
from moncore.domain.errors import AlreadyExists, CapabilityDisabled, ConcurrencyConflict, NotFound
from moncore.domain.lifecycle import Step
from moncore.domain.money import stored_minor
from moncore.domain.transactions import TxnStatus
from moncore.ledger import views
from moncore.ledger.lifecycle import LifecycleService, Operation, hold_accounts
from moncore.store import cards as card_store
from moncore.store import ledger as ledger_store
from moncore.store.models import CardClearingItem
from moncore.tenancy.service import TenancyService

SHADOW = "shadow"
LIVE = "live"
CLEARING = "clearing"
REFUND = "refund"
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ClearingEvent:
    """A processor's clearing or refund of one authorisation, as the kernel records it."""

    provider: str
    event_id: str
    authorization_ref: str
    amount_minor: int
    currency: str
    final: bool = False
    card_id: str | None = None


class CardClearing:
    def __init__(self, tenancy: TenancyService | None = None, lifecycle: LifecycleService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._lifecycle = lifecycle or LifecycleService()

    def clear(self, caller: Caller, request: RequestIdentity, txn_id: str, event: ClearingEvent) -> bool:
        """Clear `event.amount_minor` of the authorisation `txn_id`: True when posted, False when recorded in
        shadow."""
        if not self._live(caller):
            self._shadow(caller, txn_id, CLEARING, event)
            return False
        result = self._lifecycle.capture(caller, request, txn_id, amount_minor=event.amount_minor)
        rest = _rest_request(request, event.event_id)
        if event.final and result.body["status"] == TxnStatus.AUTHORIZED.value:  # the processor's last clearing
            result = self._lifecycle.void(caller, rest, txn_id, amount_minor=None)
        ops = {Operation.of_request(caller, r).op_id for r in (request, rest)}
        steps, legs = _posted_by(_load(caller.require_tenant(), txn_id), ops)
        card_store.record_live(_record(caller, txn_id, CLEARING, event, LIVE, steps, legs, posted_txn_id=txn_id))
        return True

    def refund(self, caller: Caller, request: RequestIdentity, txn_id: str, event: ClearingEvent) -> bool:
        """Give `event.amount_minor` of what was cleared back to the card account: True when posted, False when
        recorded in shadow."""
        if not self._live(caller):
            self._shadow(caller, txn_id, REFUND, event)
            return False
        result = self._lifecycle.reverse(caller, request, txn_id, amount_minor=event.amount_minor, reason="refund")
        reversal_id = str(result.body["id"])
        steps, legs = _posted_by(_load(caller.require_tenant(), reversal_id), None)
        card_store.record_live(_record(caller, txn_id, REFUND, event, LIVE, steps, legs, posted_txn_id=reversal_id))
        return True

    # ---------------------------------------------------------------- reconciliation
    def reconcile(
        self, tenant_id: str, provider: str, reported: list[dict[str, Any]], *, since: str, until: str
    ) -> dict[str, Any]:
        """Match the clearing records (shadow and live) of `provider` recorded in [since, until] against the
        processor's settlement report lines {event_id, kind, amount_minor, currency}."""
        recorded = [
            ClearingLine(item.event_id, item.kind, stored_minor(item.amount_minor), item.currency)
            for item in card_store.clearings(tenant_id, since=since, until=until)
            if item.provider == provider
        ]
        lines = [
            ClearingLine(str(r["event_id"]), str(r["kind"]), int(r["amount_minor"]), str(r["currency"]))
            for r in reported
        ]
        return {"tenant_id": tenant_id, "provider": provider, "since": since, "until": until} | reconcile(
            recorded, lines
        )

    # ---------------------------------------------------------------- internals
    def _live(self, caller: Caller) -> bool:
        """card_clearing live: post. Otherwise the gate records its shadow decision (in shadow mode) and we record."""
        try:
            self._tenancy.require_capability(caller.require_tenant(), Capability.CARD_CLEARING, caller)
        except CapabilityDisabled:
            return False
        return True

    def _shadow(self, caller: Caller, txn_id: str, kind: str, event: ClearingEvent) -> None:
        tenant_id = caller.require_tenant()
        if card_store.find_clearing(tenant_id, event.provider, event.event_id) is not None:
            return  # recorded before (a redelivery after a failure half-way)
        mode = self._tenancy.tenant_config(tenant_id).capabilities.get(Capability.CARD_CLEARING.value, Mode.DISABLED)
        for _ in range(_ATTEMPTS):
            stored = ledger_store.load_transaction(tenant_id, txn_id)
            if stored is None:
                raise NotFound(f"transaction {txn_id} not found")
            state = views.txn_state(stored)
            totals = card_store.shadow_totals(tenant_id, txn_id)
            steps: tuple[Step, ...]
            if kind == CLEARING:
                steps = shadow_clearing_steps(state, totals, event.amount_minor, final=event.final)
            else:
                steps = (shadow_refund_step(state, totals, event.amount_minor),)
            payer, payee = hold_accounts(tenant_id, stored)
            legs = legs_record(step_legs(steps, payer, payee))
            record = _record(caller, txn_id, kind, event, str(mode), steps_record(steps), legs)
            audit = audit_event(
                tenant_id=tenant_id,
                action="card.clearing_shadowed",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=txn_id,
                payload=clearing_view(record) | {"shadow_totals_before": _totals(totals)},
            )
            try:
                card_store.record_shadow(record, totals, steps, audit)
            except AlreadyExists:
                return
            except card_store.ShadowTotalsMoved:
                continue
            return
        raise ConcurrencyConflict("the authorisation's shadow clearings kept changing; redeliver the event")


def _posted_by(stored: ledger_store.StoredTxn, op_ids: set[str] | None) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """The steps and legs of a transaction that the operations `op_ids` posted (all of them when None). The op ids
    derive from the provider event, so this is exact on a redelivery or a replay too, whatever correlation id each
    delivery carried."""
    steps = [
        {"kind": e.event, "amount_minor": stored_minor(e.amount_minor), "status": e.status, "seq": stored_minor(e.seq)}
        for e in stored.events
        if op_ids is None or e.op_id in op_ids
    ]
    seqs = {step["seq"] for step in steps}
    legs = [
        [leg.account_id, stored_minor(leg.leg_amount_minor), leg.phase]
        for leg in stored.legs
        if stored_minor(leg.seq) in seqs
    ]
    return steps, legs


def _load(tenant_id: str, txn_id: str) -> ledger_store.StoredTxn:
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise NotFound(f"transaction {txn_id} not found")
    return stored


def _rest_request(request: RequestIdentity, event_id: str) -> RequestIdentity:
    """The release of what a final clearing leaves held: its own operation, derived from the clearing's event."""
    key = f"{request.idempotency_key}:rest"
    return RequestIdentity(
        idempotency_key=key, request_hash=sha256_hex({"release_rest_after": event_id}), fingerprint={}
    )


def _record(
    caller: Caller,
    txn_id: str,
    kind: str,
    event: ClearingEvent,
    mode: str,
    steps: list[dict[str, Any]],
    legs: list[list[Any]],
    *,
    posted_txn_id: str | None = None,
) -> CardClearingItem:
    tenant_id = caller.require_tenant()
    recorded_at = now_rfc3339()
    return CardClearingItem(
        card_store.clearing_key(tenant_id, event.provider, event.event_id),
        tenant_id=tenant_id,
        provider=event.provider,
        event_id=event.event_id,
        authorization_ref=event.authorization_ref,
        txn_id=txn_id,
        card_id=event.card_id,
        kind=kind,
        amount_minor=event.amount_minor,
        currency=event.currency,
        final=event.final,
        mode=mode,
        posted=mode == LIVE,
        steps=steps,
        legs=legs,
        posted_txn_id=posted_txn_id,
        recorded_at=recorded_at,
        correlation_id=caller.correlation_id,
        tenant_kind=card_store.tenant_kind(tenant_id, card_store.CLEARING_KIND),
        sort_key=f"{recorded_at}#{event.event_id}",
    )


def _totals(totals: ShadowTotals) -> dict[str, int]:
    return {
        "captured_minor": totals.captured_minor,
        "released_minor": totals.released_minor,
        "reversed_minor": totals.reversed_minor,
    }


def clearing_view(record: CardClearingItem) -> dict[str, Any]:
    return {
        "provider": record.provider,
        "event_id": record.event_id,
        "authorization_ref": record.authorization_ref,
        "txn_id": record.txn_id,
        "card_id": record.card_id,
        "kind": record.kind,
        "amount_minor": record.amount_minor,
        "currency": record.currency,
        "final": record.final,
        "mode": record.mode,
        "posted": record.posted,
        "steps": record.steps,
        "legs": record.legs,
        "posted_txn_id": record.posted_txn_id,
        "recorded_at": record.recorded_at,
    }
