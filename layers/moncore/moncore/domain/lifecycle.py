"""The transaction lifecycle as pure functions: fold stored events into a state, plan the next event or refuse it.

    CREATED -> AUTHORIZED -> SETTLED          (captures up to the held amount; the remainder released)
    AUTHORIZED -> AUTHORIZED                  (an increase: a card's incremental authorisation holds more)
    CREATED | AUTHORIZED -> REVERSED          (void or expiry before any capture)
    SETTLED is final; it is corrected only by a new REVERSAL transaction linked both ways.

The store appends each planned event in the next sequence slot of the transaction with attribute_not_exists, so two
concurrent steps cannot both build on the same state: the loser re-reads and plans again (or is refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from moncore.domain.errors import InvalidStateTransition, InvariantViolation, ValidationFailed
from moncore.domain.transactions import EventKind, TxnStatus, TxnType

TRANSITIONS: dict[TxnStatus, frozenset[TxnStatus]] = {
    TxnStatus.CREATED: frozenset({TxnStatus.AUTHORIZED, TxnStatus.SETTLED, TxnStatus.REVERSED}),
    TxnStatus.AUTHORIZED: frozenset({TxnStatus.AUTHORIZED, TxnStatus.SETTLED, TxnStatus.REVERSED}),
    TxnStatus.SETTLED: frozenset({TxnStatus.SETTLED}),  # only reversal links, which leave it SETTLED
    TxnStatus.REVERSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    kind: EventKind
    status: TxnStatus
    amount_minor: int
    related_txn_id: str | None = None


@dataclass(frozen=True, slots=True)
class TxnState:
    type: TxnType
    status: TxnStatus
    amount_minor: int  # requested (held, for manual capture) amount, plus every increase of the hold
    captured_minor: int = 0  # settled through captures, or the whole amount when created settled
    released_minor: int = 0  # hold given back by void or expiry
    reversed_minor: int = 0  # corrected by linked REVERSAL transactions
    last_seq: int = 0

    @property
    def held_minor(self) -> int:
        """What is still on hold."""
        if self.status is not TxnStatus.AUTHORIZED:
            return 0
        return self.amount_minor - self.captured_minor - self.released_minor

    @property
    def reversible_minor(self) -> int:
        return self.captured_minor - self.reversed_minor if self.status is TxnStatus.SETTLED else 0

    @property
    def next_seq(self) -> int:
        return self.last_seq + 1


def fold(txn_type: TxnType, amount_minor: int, events: Iterable[StoredEvent]) -> TxnState:
    """The state after `events` (in sequence order), checking each step was a legal move and the amounts add up."""
    state = TxnState(type=txn_type, status=TxnStatus.CREATED, amount_minor=amount_minor)
    for event in events:
        state = advance(state, event)
    return state


def advance(state: TxnState, event: StoredEvent) -> TxnState:
    """The state after one more event; raises InvariantViolation if the event could not legally follow."""
    if event.seq != state.next_seq:
        raise InvariantViolation(f"event {event.seq} follows event {state.last_seq}")
    if event.status not in TRANSITIONS[state.status]:
        raise InvariantViolation(f"transition {state.status} -> {event.status} is not allowed")
    if event.amount_minor <= 0:
        raise InvariantViolation(f"event {event.seq} moves a non-positive amount")
    after = _apply(state, event)
    if (
        after.captured_minor + after.released_minor > after.amount_minor
        or after.reversed_minor > after.captured_minor
        or (after.status is TxnStatus.AUTHORIZED and after.held_minor <= 0)
        or (after.status is not TxnStatus.AUTHORIZED and _unaccounted(after))
    ):
        raise InvariantViolation(f"lifecycle amounts do not add up after event {event.seq}: {after}")
    return after


def _unaccounted(state: TxnState) -> bool:
    """A closed transaction must account for its whole amount as captured or released."""
    return state.captured_minor + state.released_minor != state.amount_minor


def _apply(state: TxnState, event: StoredEvent) -> TxnState:
    changed = replace(state, status=event.status, last_seq=event.seq)
    if event.kind in (EventKind.SETTLED, EventKind.CAPTURED):
        return replace(changed, captured_minor=state.captured_minor + event.amount_minor)
    if event.kind in (EventKind.VOIDED, EventKind.EXPIRED):
        return replace(changed, released_minor=state.released_minor + event.amount_minor)
    if event.kind is EventKind.REVERSAL_LINKED:
        return replace(changed, reversed_minor=state.reversed_minor + event.amount_minor)
    if event.kind is EventKind.INCREASED:
        return replace(changed, amount_minor=state.amount_minor + event.amount_minor)
    return changed  # AUTHORIZED places the hold: amount_minor already says how much


@dataclass(frozen=True, slots=True)
class Step:
    """A planned event: what it is, how much it moves, and the status it leaves."""

    kind: EventKind
    amount_minor: int
    status: TxnStatus


def plan_capture(state: TxnState, amount_minor: int | None) -> Step:
    held = _require_hold(state, "captured")
    amount = held if amount_minor is None else amount_minor
    _require_within(amount, held, "capture", "the remaining hold")
    return Step(EventKind.CAPTURED, amount, TxnStatus.SETTLED if amount == held else TxnStatus.AUTHORIZED)


def plan_increase(state: TxnState, amount_minor: int) -> Step:
    """A card's incremental authorisation: the open hold grows by `amount_minor` (it stays AUTHORIZED)."""
    _require_hold(state, "increased")
    if amount_minor <= 0:
        raise ValidationFailed(
            "an increase must be positive", errors=[{"loc": ["body", "amount_minor"], "msg": "greater than 0"}]
        )
    return Step(EventKind.INCREASED, amount_minor, TxnStatus.AUTHORIZED)


def plan_release(state: TxnState, amount_minor: int | None, kind: EventKind) -> Step:
    """Void (on request) or expiry (by the sweep): give back the rest of the hold, or part of it when an amount is
    given. With nothing captured the transaction ends REVERSED; after captures it ends SETTLED."""
    if kind not in (EventKind.VOIDED, EventKind.EXPIRED):
        raise InvariantViolation(f"{kind} is not a release")
    held = _require_hold(state, "voided")
    amount = held if amount_minor is None else amount_minor
    _require_within(amount, held, "release", "the remaining hold")
    if amount < held:
        return Step(kind, amount, TxnStatus.AUTHORIZED)
    return Step(kind, amount, TxnStatus.SETTLED if state.captured_minor > 0 else TxnStatus.REVERSED)


def plan_reversal(state: TxnState, amount_minor: int | None) -> Step:
    """A SETTLED transaction is corrected by a new REVERSAL transaction; this plans the link event on the original."""
    if state.type is TxnType.REVERSAL:
        raise InvalidStateTransition("a reversal cannot itself be reversed; post a new transaction instead")
    if state.status is not TxnStatus.SETTLED:
        hint = " (void releases a hold)" if state.status is TxnStatus.AUTHORIZED else ""
        raise InvalidStateTransition(f"only a SETTLED transaction can be reversed; this one is {state.status}{hint}")
    reversible = state.reversible_minor
    if reversible == 0:
        raise InvalidStateTransition("the transaction is already fully reversed")
    amount = reversible if amount_minor is None else amount_minor
    _require_within(amount, reversible, "reversal", "the amount not yet reversed")
    return Step(EventKind.REVERSAL_LINKED, amount, TxnStatus.SETTLED)


def _require_hold(state: TxnState, verb: str) -> int:
    if state.status is not TxnStatus.AUTHORIZED:
        raise InvalidStateTransition(f"only an AUTHORIZED transaction can be {verb}; this one is {state.status}")
    return state.held_minor


def _require_within(amount_minor: int, limit_minor: int, what: str, of_what: str) -> None:
    if amount_minor > limit_minor:
        raise ValidationFailed(
            f"{what} of {amount_minor} exceeds {of_what} ({limit_minor})",
            errors=[{"loc": ["body", "amount_minor"], "msg": f"at most {limit_minor}"}],
        )
