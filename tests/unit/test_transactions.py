"""Invariant 1 (zero-sum) and the derivation of balance changes from legs."""

import pytest

from moncore.domain.errors import InvariantViolation
from moncore.domain.transactions import (
    AccountKind,
    AccountRef,
    Leg,
    Phase,
    balance_changes,
    check_zero_sum,
    settled_pair,
)

ALICE = AccountRef("acc_a", "EUR", AccountKind.USER, "usr_a")
BOB = AccountRef("acc_b", "EUR", AccountKind.USER, "usr_b")
CLEARING = AccountRef("sys_funding_clearing_eur", "EUR", AccountKind.SYSTEM)
YEN = AccountRef("acc_y", "JPY", AccountKind.USER, "usr_a")


def test_settled_pair_balances_and_moves_posted_and_available() -> None:
    legs = settled_pair(ALICE, BOB, 250)
    check_zero_sum(legs)
    changes = {c.account.account_id: c for c in balance_changes(legs)}
    assert (changes["acc_a"].posted_delta_minor, changes["acc_a"].available_delta_minor) == (-250, -250)
    assert (changes["acc_b"].posted_delta_minor, changes["acc_b"].available_delta_minor) == (250, 250)
    assert changes["acc_a"].pending_delta_minor == changes["acc_b"].pending_delta_minor == 0


def test_debit_of_user_account_requires_amount_above_floor() -> None:
    changes = {c.account.account_id: c for c in balance_changes(settled_pair(ALICE, BOB, 250))}
    assert changes["acc_a"].required_available_minor == 250
    assert changes["acc_b"].required_available_minor is None


def test_system_accounts_have_no_floor() -> None:
    changes = {c.account.account_id: c for c in balance_changes(settled_pair(CLEARING, ALICE, 999))}
    assert changes[CLEARING.account_id].required_available_minor is None


def test_unbalanced_legs_are_refused() -> None:
    with pytest.raises(InvariantViolation, match="zero"):
        check_zero_sum([Leg(ALICE, -100, Phase.SETTLED), Leg(BOB, 99, Phase.SETTLED)])


def test_zero_sum_is_per_currency() -> None:
    with pytest.raises(InvariantViolation):
        check_zero_sum([Leg(ALICE, -100, Phase.SETTLED), Leg(YEN, 100, Phase.SETTLED)])


@pytest.mark.parametrize("amount", [0, 1.0, True])
def test_leg_amounts_are_nonzero_ints(amount: object) -> None:
    with pytest.raises(InvariantViolation):
        check_zero_sum([Leg(ALICE, amount, Phase.SETTLED), Leg(BOB, 0, Phase.SETTLED)])  # type: ignore[arg-type]


def test_pair_needs_distinct_accounts_of_one_currency() -> None:
    with pytest.raises(InvariantViolation):
        settled_pair(ALICE, ALICE, 1)
    with pytest.raises(InvariantViolation):
        settled_pair(ALICE, YEN, 1)


def test_authorized_hold_reduces_available_of_debtor_only() -> None:
    legs = (Leg(ALICE, -70, Phase.AUTHORIZED), Leg(BOB, 70, Phase.AUTHORIZED))
    changes = {c.account.account_id: c for c in balance_changes(legs)}
    assert (
        changes["acc_a"].posted_delta_minor,
        changes["acc_a"].pending_delta_minor,
        changes["acc_a"].available_delta_minor,
    ) == (0, -70, -70)
    assert (
        changes["acc_b"].posted_delta_minor,
        changes["acc_b"].pending_delta_minor,
        changes["acc_b"].available_delta_minor,
    ) == (0, 70, 0)
