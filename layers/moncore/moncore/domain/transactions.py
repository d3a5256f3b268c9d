"""Transactions and their legs: pure construction and the money invariants checked on both sides of a write.

A transaction is a header plus signed legs (debit < 0 < credit) that sum to zero per currency (invariant 1). Balance
changes are derived from the legs, never supplied separately, so a posting cannot move a balance its legs do not show.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from moncore.domain.errors import InvariantViolation


class TxnType(StrEnum):
    FUNDING = "funding"
    TRANSFER = "transfer"


class TxnStatus(StrEnum):
    CREATED = "CREATED"
    AUTHORIZED = "AUTHORIZED"
    SETTLED = "SETTLED"
    REVERSED = "REVERSED"


class Phase(StrEnum):
    """The phase a leg belongs to. AUTHORIZED legs are holds (pending); SETTLED legs are posted."""

    AUTHORIZED = "AUTHORIZED"
    SETTLED = "SETTLED"
    REVERSED = "REVERSED"


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

    @property
    def floor_minor(self) -> int | None:
        """Lowest available balance allowed; None means unbounded (system accounts mirror external positions)."""
        return 0 if self.kind is AccountKind.USER else None


@dataclass(frozen=True, slots=True)
class Leg:
    account: AccountRef
    amount_minor: int  # signed: negative debits, positive credits
    phase: Phase

    @property
    def currency(self) -> str:
        return self.account.currency


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """The net effect of a transaction's legs on one account's balance."""

    account: AccountRef
    posted_delta_minor: int
    pending_delta_minor: int
    available_delta_minor: int

    @property
    def required_available_minor(self) -> int | None:
        """Available balance the account must have before the change so it stays at or above its floor."""
        floor = self.account.floor_minor
        if floor is None or self.available_delta_minor >= 0:
            return None
        return floor - self.available_delta_minor


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    tenant_id: str
    type: TxnType
    status: TxnStatus
    amount_minor: int
    currency: str
    legs: tuple[Leg, ...]
    created_at: str
    request_hash: str
    correlation_id: str
    reference: str | None = None
    provider: str | None = None
    provider_ref: str | None = None
    compliance: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, str] = field(default_factory=dict)


def check_zero_sum(legs: tuple[Leg, ...] | list[Leg]) -> None:
    """Invariant 1: legs balance per currency. Raises, never asserts."""
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if isinstance(leg.amount_minor, bool) or not isinstance(leg.amount_minor, int) or leg.amount_minor == 0:
            raise InvariantViolation(f"leg amount must be a non-zero int, got {leg.amount_minor!r}")
        totals[leg.currency] += leg.amount_minor
    unbalanced = {ccy: total for ccy, total in totals.items() if total != 0}
    if unbalanced:
        raise InvariantViolation(f"legs do not sum to zero per currency: {unbalanced}")


def balance_changes(legs: tuple[Leg, ...]) -> list[BalanceChange]:
    """Net balance effect per account. SETTLED legs move posted and available; AUTHORIZED legs are holds that move
    pending and, for debits only, available (a hold never makes incoming money spendable early)."""
    changes: dict[str, list[int]] = {}
    accounts: dict[str, AccountRef] = {}
    for leg in legs:
        posted, pending, available = changes.setdefault(leg.account.account_id, [0, 0, 0])
        accounts[leg.account.account_id] = leg.account
        if leg.phase is Phase.SETTLED:
            posted += leg.amount_minor
            available += leg.amount_minor
        elif leg.phase is Phase.AUTHORIZED:
            pending += leg.amount_minor
            available += min(leg.amount_minor, 0)
        else:
            raise InvariantViolation(f"phase {leg.phase} does not change balances by itself")
        changes[leg.account.account_id] = [posted, pending, available]
    return [
        BalanceChange(accounts[acc_id], posted, pending, available)
        for acc_id, (posted, pending, available) in sorted(changes.items())
    ]


def settled_pair(debit: AccountRef, credit: AccountRef, amount_minor: int) -> tuple[Leg, ...]:
    """Two SETTLED legs moving `amount_minor` from `debit` to `credit` (same currency)."""
    if debit.currency != credit.currency:
        raise InvariantViolation("a single-currency pair needs both accounts in one currency")
    if debit.account_id == credit.account_id:
        raise InvariantViolation("debit and credit account must differ")
    legs = (
        Leg(debit, -amount_minor, Phase.SETTLED),
        Leg(credit, amount_minor, Phase.SETTLED),
    )
    check_zero_sum(legs)
    return legs
