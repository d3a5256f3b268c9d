"""Transactions, their events and legs: pure construction and the money invariants checked on both sides of a write.

A transaction is a header (what was asked, once) plus an append-only sequence of events (what happened: authorized,
increased, captured, voided, expired, settled, reversal linked). Each event carries signed legs (debit < 0 < credit)
that sum to zero per currency (invariant 1). Balance changes are derived from the legs, never supplied separately, so
a posting cannot move a balance its legs do not show.

Leg phases and their effect on a balance (see docs/lifecycle.md):
- SETTLED  a:  posted += a, available += a
- AUTHORIZED a<0 (hold on the payer):  pending_out += |a|, available -= |a|
- AUTHORIZED a>0 (incoming hold):      pending_in += a (incoming money is never spendable early)
- RELEASED a>0 (payer's hold released): pending_out -= a, available += a
- RELEASED a<0 (incoming hold released): pending_in -= |a|
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from moncore.domain.errors import InvariantViolation

# Captures whose first event holds the funds (AUTHORIZED) rather than settling them: a partner's manual capture,
# and an AML review, which waits for a case decision and never expires on its own.
HOLDING_CAPTURES = frozenset({"manual", "review"})


class TxnType(StrEnum):
    FUNDING = "funding"
    TRANSFER = "transfer"
    CARD = "card"
    FX_CONVERSION = "fx_conversion"
    REVERSAL = "reversal"
    QR_PAYMENT = "qr_payment"  # a payer pays a merchant's EMV QR payment request (moncore.ledger.qr)
    SETTLEMENT = "settlement"  # a provider settled a day's clearing with the safeguarding bank (moncore.settlement)
    WITHDRAWAL = "withdrawal"  # a payout to an external IBAN through the open banking provider (ledger.withdrawals)
    ADJUSTMENT = "adjustment"  # a reconciliation exception corrected after four-eyes approval (moncore.reconciliation)


class TxnStatus(StrEnum):
    CREATED = "CREATED"
    AUTHORIZED = "AUTHORIZED"
    SETTLED = "SETTLED"
    REVERSED = "REVERSED"


class Phase(StrEnum):
    """The phase a leg belongs to: AUTHORIZED places a hold, RELEASED takes (part of) it back, SETTLED is posted."""

    AUTHORIZED = "AUTHORIZED"
    RELEASED = "RELEASED"
    SETTLED = "SETTLED"


class EventKind(StrEnum):
    """What an event did. The status after it is stored with it, so the lifecycle reads without recomputation."""

    AUTHORIZED = "authorized"  # hold placed
    SUBMITTED = "submitted"  # handed to the provider, which accepted it (no legs; names the provider's reference)
    INCREASED = "increased"  # the hold grows (a card's incremental authorisation): more is held from the payer
    CAPTURED = "captured"  # part or all of the hold settled
    VOIDED = "voided"  # the rest of the hold released on request
    EXPIRED = "expired"  # the rest of the hold released by the expiry sweep
    SETTLED = "settled"  # created settled (capture "auto")
    REVERSAL_LINKED = "reversal_linked"  # on a SETTLED transaction: a reversing transaction now points at it


class AccountKind(StrEnum):
    USER = "user"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class AccountRef:
    """What a posting needs to know about an account; immutable for the account's life, so safe to cache."""

    account_id: str
    currency: str
    kind: AccountKind
    user_id: str | None = None
    shards: int = 1  # sub-balance items the balance is spread over (hot system accounts); the balance is their sum

    @property
    def floor_minor(self) -> int | None:
        """Lowest available balance allowed; None means unbounded (system accounts mirror external positions)."""
        return 0 if self.kind is AccountKind.USER else None


@dataclass(frozen=True, slots=True)
class Leg:
    account: AccountRef
    amount_minor: int  # signed: negative debits, positive credits
    phase: Phase
    fx: Mapping[str, Any] | None = None  # FX attribution: rate, quote_id, provider, both amounts and currencies

    @property
    def currency(self) -> str:
        return self.account.currency


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """The net effect of an event's legs on one account's balance."""

    account: AccountRef
    posted_delta_minor: int
    pending_in_delta_minor: int
    pending_out_delta_minor: int
    available_delta_minor: int

    @property
    def pending_delta_minor(self) -> int:
        """Net pending as the API shows it: incoming holds positive, outgoing holds negative."""
        return self.pending_in_delta_minor - self.pending_out_delta_minor

    @property
    def required_available_minor(self) -> int | None:
        """Available balance the account must have before the change so it stays at or above its floor."""
        floor = self.account.floor_minor
        if floor is None or self.available_delta_minor >= 0:
            return None
        return floor - self.available_delta_minor


@dataclass(frozen=True, slots=True)
class Transaction:
    """The header: written once when the transaction is created, never changed."""

    id: str
    tenant_id: str
    type: TxnType
    amount_minor: int
    currency: str
    created_at: str
    request_hash: str
    correlation_id: str
    reference: str | None = None
    provider: str | None = None
    provider_ref: str | None = None
    compliance: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, str] = field(default_factory=dict)
    # auto | manual | review (held by an AML review until a case decides, docs/aml.md) | provider (held until the
    # provider reports the outcome by webhook: asynchronous fundings and withdrawals, docs/providers.md)
    capture: str = "auto"
    hold_expires_at: str | None = None
    reverses_txn_id: str | None = None  # a REVERSAL points at the SETTLED transaction it corrects
    fx: dict[str, Any] | None = None
    # The user account a funding or withdrawal is for, named on the header because an asynchronous funding has no
    # legs until its provider reports (moncore.ledger.open_banking).
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One appended step of a transaction's lifecycle, with the legs it posts (none for a link)."""

    seq: int  # 1, 2, ... within the transaction; the ledger refuses a second event in the same slot
    kind: EventKind
    status: TxnStatus  # the transaction's status after this event
    amount_minor: int
    legs: tuple[Leg, ...]
    recorded_at: str
    op_id: str  # what caused it: derived from the idempotency key or the provider's event id (dedup guard)
    request_hash: str
    actor: str
    correlation_id: str
    reason: str | None = None
    related_txn_id: str | None = None
    provider_ref: str | None = None  # a submitted event: the provider's reference for what it was handed


def check_zero_sum(legs: Iterable[Leg]) -> None:
    """Invariant 1: legs balance per currency. Raises, never asserts."""
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if isinstance(leg.amount_minor, bool) or not isinstance(leg.amount_minor, int) or leg.amount_minor == 0:
            raise InvariantViolation(f"leg amount must be a non-zero int, got {leg.amount_minor!r}")
        totals[leg.currency] += leg.amount_minor
    unbalanced = {ccy: total for ccy, total in totals.items() if total != 0}
    if unbalanced:
        raise InvariantViolation(f"legs do not sum to zero per currency: {unbalanced}")


def leg_effect(phase: Phase, amount_minor: int) -> tuple[int, int, int, int]:
    """(posted, pending_in, pending_out, available) deltas of one leg; the single definition of what a phase does."""
    if phase is Phase.SETTLED:
        return amount_minor, 0, 0, amount_minor
    if phase is Phase.AUTHORIZED:
        if amount_minor < 0:
            return 0, 0, -amount_minor, amount_minor
        return 0, amount_minor, 0, 0
    if phase is Phase.RELEASED:
        if amount_minor > 0:
            return 0, 0, -amount_minor, amount_minor
        return 0, amount_minor, 0, 0
    raise InvariantViolation(f"unknown phase {phase!r}")


def balance_changes(legs: Iterable[Leg]) -> list[BalanceChange]:
    """Net balance effect per account, in account-id order (a stable order keeps transaction items deterministic)."""
    changes: dict[str, list[int]] = {}
    accounts: dict[str, AccountRef] = {}
    for leg in legs:
        totals = changes.setdefault(leg.account.account_id, [0, 0, 0, 0])
        accounts[leg.account.account_id] = leg.account
        for i, delta in enumerate(leg_effect(leg.phase, leg.amount_minor)):
            totals[i] += delta
    return [BalanceChange(accounts[acc_id], *totals) for acc_id, totals in sorted(changes.items())]


def settled_pair(debit: AccountRef, credit: AccountRef, amount_minor: int) -> tuple[Leg, ...]:
    """Two SETTLED legs moving `amount_minor` from `debit` to `credit` (same currency)."""
    return _pair(debit, credit, amount_minor, Phase.SETTLED)


def hold_pair(debit: AccountRef, credit: AccountRef, amount_minor: int) -> tuple[Leg, ...]:
    """Two AUTHORIZED legs: a hold of `amount_minor` on `debit` in favour of `credit`."""
    return _pair(debit, credit, amount_minor, Phase.AUTHORIZED)


def release_pair(debit: AccountRef, credit: AccountRef, amount_minor: int) -> tuple[Leg, ...]:
    """Two RELEASED legs taking `amount_minor` of the hold `hold_pair(debit, credit, ...)` back."""
    legs = (Leg(debit, amount_minor, Phase.RELEASED), Leg(credit, -amount_minor, Phase.RELEASED))
    check_zero_sum(legs)
    return legs


def _pair(debit: AccountRef, credit: AccountRef, amount_minor: int, phase: Phase) -> tuple[Leg, ...]:
    if debit.currency != credit.currency:
        raise InvariantViolation("a single-currency pair needs both accounts in one currency")
    if debit.account_id == credit.account_id:
        raise InvariantViolation("debit and credit account must differ")
    legs = (Leg(debit, -amount_minor, phase), Leg(credit, amount_minor, phase))
    check_zero_sum(legs)
    return legs


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's balance (summed over its shards). Checked whenever it is read back from the store."""

    posted_minor: int = 0
    pending_in_minor: int = 0
    pending_out_minor: int = 0
    available_minor: int = 0

    def __add__(self, other: Balance) -> Balance:
        return Balance(
            self.posted_minor + other.posted_minor,
            self.pending_in_minor + other.pending_in_minor,
            self.pending_out_minor + other.pending_out_minor,
            self.available_minor + other.available_minor,
        )

    @property
    def pending_minor(self) -> int:
        return self.pending_in_minor - self.pending_out_minor

    def checked(self, what: str) -> Balance:
        """Raise unless the parts are coherent: available = posted - outgoing holds, holds never negative."""
        if (
            self.available_minor != self.posted_minor - self.pending_out_minor
            or self.pending_in_minor < 0
            or self.pending_out_minor < 0
        ):
            raise InvariantViolation(f"balance of {what} is inconsistent: {self}")
        return self

    @classmethod
    def of_legs(cls, legs: Iterable[tuple[Phase, int]]) -> Balance:
        """The balance a sequence of (phase, signed amount) entries adds up to: the derivation of invariant 2."""
        total = cls()
        for phase, amount_minor in legs:
            total = total + cls(*leg_effect(phase, amount_minor))
        return total
