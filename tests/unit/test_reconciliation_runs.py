"""Pure rules of reconciliation runs (moncore.domain.reconciliation_runs): what an exception's difference is, what
an adjustment books, how results feed the balance check, which task failed."""

from __future__ import annotations

from typing import Any

import pytest

from moncore.domain.errors import ValidationFailed
from moncore.domain.reconciliation_runs import (
    BalanceCheck,
    Tally,
    adjustable,
    adjustment_purposes,
    done,
    exception_id_of,
    failed_task,
    report_row,
    run_id_of,
    tally,
)


def result(outcome: str, bank: int, ledger: int, currency: str = "EUR", ledger_currency: str = "EUR") -> dict[str, Any]:
    return {
        "outcome": outcome,
        "currency": currency if bank or outcome != "missing_at_bank" else "",
        "ledger_currency": ledger_currency if ledger or outcome != "missing_in_ledger" else "",
        "bank_minor": bank,
        "ledger_minor": ledger,
        "bank_line_ids": ["S#1"] if bank else [],
        "txn_ids": ["txn_1"] if ledger else [],
        "side": "",
    }


def test_a_run_is_one_per_tenant_provider_and_day() -> None:
    assert run_id_of("ten_a", "bank", "2026-01-31") == run_id_of("ten_a", "bank", "2026-01-31")
    assert len({run_id_of("ten_a", "bank", d) for d in ("2026-01-30", "2026-01-31")}) == 2
    assert run_id_of("ten_a", "bank", "2026-01-31") != run_id_of("ten_b", "bank", "2026-01-31")


def test_exception_ids_are_stable_per_attempt_and_content() -> None:
    missing = result("missing_in_ledger", 4_200, 0)
    assert exception_id_of("rec_1", 1, missing) == exception_id_of("rec_1", 1, dict(missing))
    assert exception_id_of("rec_1", 1, missing) != exception_id_of("rec_1", 2, missing)
    assert exception_id_of("rec_1", 1, missing) != exception_id_of("rec_1", 1, missing | {"bank_line_ids": ["S#2"]})


@pytest.mark.parametrize(
    ("outcome", "bank", "ledger", "difference", "purposes"),
    [
        ("missing_in_ledger", 4_200, 0, 4_200, ("safeguarding", "reconciliation_suspense")),
        ("missing_in_ledger", -150, 0, -150, ("reconciliation_suspense", "safeguarding")),
        ("missing_at_bank", 0, 3_000, -3_000, ("reconciliation_suspense", "safeguarding")),
        ("amount_mismatch", 20_500, 20_000, 500, ("safeguarding", "reconciliation_suspense")),
        ("duplicate", 700, 0, 700, ("safeguarding", "reconciliation_suspense")),
    ],
)
def test_an_adjustment_books_the_bank_minus_the_ledger(
    outcome: str, bank: int, ledger: int, difference: int, purposes: tuple[str, str]
) -> None:
    assert adjustable(result(outcome, bank, ledger)) == difference
    assert adjustment_purposes(difference) == purposes


@pytest.mark.parametrize(
    "refused",
    [
        result("currency_mismatch", 1_000, 1_000, "EUR", "GBP"),
        result("matched", 1_000, 1_000),
        result("amount_mismatch", 1_000, 1_000),  # nothing to book
    ],
)
def test_what_cannot_be_adjusted_is_a_validation_error(refused: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        adjustable(refused)


def test_results_split_into_in_flight_and_unexplained_differences_per_currency() -> None:
    tallies: dict[str, Tally] = {}
    for each in (
        result("matched", 10_000, 10_000),
        result("amount_mismatch", 20_500, 20_000),
        result("missing_at_bank", 0, 30_000),
        result("missing_in_ledger", 4_200, 0),
        result("currency_mismatch", 900, 800, "EUR", "GBP"),
    ):
        tally(tallies, each)
    assert {ccy: t.record() for ccy, t in tallies.items()} == {
        "EUR": {"in_flight_minor": -30_000, "exceptions_minor": 500 + 4_200 + 900},
        "GBP": {"in_flight_minor": 0, "exceptions_minor": -800},
    }


def test_the_balance_check_says_what_the_exceptions_explain() -> None:
    check = BalanceCheck("EUR", 34_700, "2026-01-31", 60_000, -30_000, 4_700).record()
    assert (check["expected_bank_minor"], check["difference_minor"], check["residual_minor"]) == (30_000, 4_700, 0)
    assert (check["balanced"], check["explained"]) == (False, True)
    unknown = BalanceCheck("EUR", None, None, 60_000, 0, 0).record()
    assert (unknown["difference_minor"], unknown["balanced"], unknown["explained"]) == (None, False, False)


def test_steps_say_what_is_done_and_which_task_failed() -> None:
    assert done("matched", "loaded") and done("matched", "matched") and not done("matched", "balanced")
    assert not done("failed", "claimed")
    assert [failed_task(s) for s in ("claimed", "ingested", "loaded", "matched", "balanced", "reported")] == [
        "ingest",
        "load_ledger",
        "match",
        "balance_check",
        "write_report",
        "complete",
    ]


def test_a_report_row_joins_ids_and_leaves_nothing_as_none() -> None:
    row = report_row(result("missing_in_ledger", 4_200, 0) | {"rule": "", "reference": None}, "rex_1")
    assert row[:2] == ["missing_in_ledger", "rex_1"] and "None" not in row and "S#1" in row
