"""Cards, pure rules (no I/O): card statuses and their transitions, the compliance checks an authorisation adds for
the card (its status, the merchant's country), what a clearing does to a hold, what a shadow clearing would post,
and the matching of clearing records against a processor's settlement report (docs/providers.md, "Cards").

A clearing is a capture of its amount; the processor's last clearing of an authorisation (`final`) also releases
whatever is still held after it. A refund is a linked reversal of what was cleared. While the capability
`card_clearing` is not live, clearings and refunds are computed exactly as if they were posted (against the ledger's
state plus the earlier shadow clearings of the same authorisation) and recorded, never posted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from moncore.domain.errors import CardNotActive, GeoBlocked, InvalidStateTransition, ValidationFailed
from moncore.domain.geo import FATF_CALL_FOR_ACTION, FATF_LIST_AS_OF
from moncore.domain.lifecycle import Step, StoredEvent, TxnState, advance, plan_capture, plan_release
from moncore.domain.transactions import AccountRef, EventKind, Leg, TxnStatus, release_pair, settled_pair


class CardStatus(StrEnum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"  # authorisations declined until unfrozen (by the partner: a cardholder's "lock card")
    CLOSED = "CLOSED"  # final


class CardAction(StrEnum):
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    CLOSE = "close"


TARGET: dict[CardAction, CardStatus] = {
    CardAction.FREEZE: CardStatus.FROZEN,
    CardAction.UNFREEZE: CardStatus.ACTIVE,
    CardAction.CLOSE: CardStatus.CLOSED,
}
_ALLOWED_FROM: dict[CardAction, frozenset[CardStatus]] = {
    CardAction.FREEZE: frozenset({CardStatus.ACTIVE}),
    CardAction.UNFREEZE: frozenset({CardStatus.FROZEN}),
    CardAction.CLOSE: frozenset({CardStatus.ACTIVE, CardStatus.FROZEN}),
}


def plan_status_change(current: CardStatus, action: CardAction) -> CardStatus | None:
    """The status `action` moves a card in `current` to, or None when the card is already there (asking again is
    not an error: a retry after the issuer failed must be able to finish the change). InvalidStateTransition when
    the action is not possible (a closed card stays closed)."""
    target = TARGET[action]
    if current is target:
        return None
    if current not in _ALLOWED_FROM[action]:
        raise InvalidStateTransition(f"a {current.value.lower()} card cannot be {action.value}d")
    return target


def check_card(card_id: str, status: str) -> dict[str, Any]:
    """The recorded check that the card may authorise; CardNotActive when it is frozen or closed."""
    if status != CardStatus.ACTIVE.value:
        raise CardNotActive(
            f"card {card_id} is {status.lower()}: its authorisations are declined",
            errors=[{"loc": ["card"], "msg": f"card is {status.lower()}", "card_id": card_id}],
        )
    return {
        "check": "card",
        "card_id": card_id,
        "status": status,
        "result": "pass",
        "enforced": "by a condition on the card in the posting",
    }


def check_merchant_country(country: str) -> dict[str, Any]:
    """A card payment to a merchant in a FATF call-for-action country is refused (whatever the tenant's
    jurisdictions: cards are used abroad, so the tenant's jurisdictions, which bound where its users live, do not
    bound where they pay). GeoBlocked names the listing."""
    listing = FATF_CALL_FOR_ACTION.get(country.upper())
    if listing is not None:
        raise GeoBlocked(
            f"merchant country {listing.country} ({listing.name}) is on the FATF call-for-action list "
            f"(FATF calls for {listing.measure}; list as of {FATF_LIST_AS_OF})",
            errors=[{"loc": ["merchant", "country"], "msg": "FATF call-for-action jurisdiction", "country": country}],
        )
    return {
        "check": "geo",
        "subject": "merchant",
        "country": country.upper(),
        "result": "pass",
        "fatf_list_as_of": FATF_LIST_AS_OF,
    }


# ------------------------------------------------------------------------------------------------ clearing
def clearing_steps(state: TxnState, amount_minor: int, *, final: bool) -> tuple[Step, ...]:
    """The lifecycle steps a clearing of `amount_minor` makes on `state`: a capture, and for the final clearing the
    release of what is still held after it. Raises like plan_capture (not AUTHORIZED, more than held)."""
    capture = plan_capture(state, amount_minor)
    if not final or capture.status is not TxnStatus.AUTHORIZED:
        return (capture,)
    after = advance(state, StoredEvent(state.next_seq, capture.kind, capture.status, capture.amount_minor))
    return capture, plan_release(after, None, EventKind.VOIDED)


@dataclass(frozen=True, slots=True)
class ShadowTotals:
    """What the shadow clearings of one authorisation would have done so far."""

    captured_minor: int = 0
    released_minor: int = 0
    reversed_minor: int = 0
    version: int = 0

    def plus(self, steps: Iterable[Step]) -> ShadowTotals:
        totals = self
        for step in steps:
            if step.kind is EventKind.CAPTURED:
                totals = replace(totals, captured_minor=totals.captured_minor + step.amount_minor)
            elif step.kind in (EventKind.VOIDED, EventKind.EXPIRED):
                totals = replace(totals, released_minor=totals.released_minor + step.amount_minor)
            elif step.kind is EventKind.REVERSAL_LINKED:
                totals = replace(totals, reversed_minor=totals.reversed_minor + step.amount_minor)
        return totals


def shadow_clearing_steps(state: TxnState, totals: ShadowTotals, amount_minor: int, *, final: bool) -> tuple[Step, ...]:
    """What a clearing would do if every earlier shadow clearing of the authorisation had been posted. The ledger's
    hold must still be open: a clearing after the hold was released (expiry, reversal) is refused as it is live."""
    if state.status is not TxnStatus.AUTHORIZED:
        raise InvalidStateTransition(f"only an AUTHORIZED transaction can be cleared; this one is {state.status}")
    if state.held_minor - totals.captured_minor - totals.released_minor <= 0:
        raise InvalidStateTransition("the hold was already cleared in full (in shadow)")
    view = replace(
        state,
        captured_minor=state.captured_minor + totals.captured_minor,
        released_minor=state.released_minor + totals.released_minor,
    )
    return clearing_steps(view, amount_minor, final=final)


def shadow_refund_step(state: TxnState, totals: ShadowTotals, amount_minor: int) -> Step:
    """What a refund would do if the shadow clearings had been posted: a linked reversal of cleared money."""
    refundable = state.captured_minor + totals.captured_minor - state.reversed_minor - totals.reversed_minor
    if refundable <= 0:
        raise InvalidStateTransition("nothing was cleared (live or in shadow) that a refund could give back")
    if amount_minor > refundable:
        raise ValidationFailed(
            f"refund of {amount_minor} exceeds what was cleared and not refunded ({refundable})",
            errors=[{"loc": ["amount"], "msg": f"at most {refundable}"}],
        )
    return Step(EventKind.REVERSAL_LINKED, amount_minor, TxnStatus.SETTLED)


def step_legs(steps: Sequence[Step], payer: AccountRef, payee: AccountRef) -> tuple[Leg, ...]:
    """The legs `steps` post on a hold of `payer` in favour of `payee` (a refund moves cleared money back)."""
    legs: list[Leg] = []
    for step in steps:
        if step.kind is EventKind.CAPTURED:
            legs += release_pair(payer, payee, step.amount_minor) + settled_pair(payer, payee, step.amount_minor)
        elif step.kind in (EventKind.VOIDED, EventKind.EXPIRED):
            legs += release_pair(payer, payee, step.amount_minor)
        elif step.kind is EventKind.REVERSAL_LINKED:
            legs += settled_pair(payee, payer, step.amount_minor)
    return tuple(legs)


def legs_record(legs: Iterable[Leg]) -> list[list[Any]]:
    return [[leg.account.account_id, leg.amount_minor, leg.phase.value] for leg in legs]


def steps_record(steps: Iterable[Step]) -> list[dict[str, Any]]:
    return [{"kind": s.kind.value, "amount_minor": s.amount_minor, "status": s.status.value} for s in steps]


# ------------------------------------------------------------------------------------------------ reconciliation
@dataclass(frozen=True, slots=True)
class ClearingLine:
    """One clearing or refund, as the kernel recorded it or as the processor's settlement report lists it."""

    event_id: str
    kind: str  # clearing | refund
    amount_minor: int
    currency: str


def reconcile(recorded: Iterable[ClearingLine], reported: Iterable[ClearingLine]) -> dict[str, list[dict[str, Any]]]:
    """Match recorded clearings (shadow or live) with the processor's report by event id: matched, amount or
    currency mismatches, reported but never recorded (missing_in_kernel), recorded but not reported
    (missing_at_provider)."""
    ours = {line.event_id: line for line in recorded}
    theirs = {line.event_id: line for line in reported}
    report: dict[str, list[dict[str, Any]]] = {
        "matched": [],
        "mismatched": [],
        "missing_in_kernel": [],
        "missing_at_provider": [],
    }
    for event_id in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(event_id), theirs.get(event_id)
        if mine is None and other is not None:
            report["missing_in_kernel"].append(_line(other))
        elif other is None and mine is not None:
            report["missing_at_provider"].append(_line(mine))
        elif mine is not None and other is not None:
            same = (mine.kind, mine.amount_minor, mine.currency) == (other.kind, other.amount_minor, other.currency)
            if same:
                report["matched"].append(_line(mine))
            else:
                report["mismatched"].append({"recorded": _line(mine), "reported": _line(other)})
    return report


def _line(line: ClearingLine) -> dict[str, Any]:
    return {"event_id": line.event_id, "kind": line.kind, "amount_minor": line.amount_minor, "currency": line.currency}
