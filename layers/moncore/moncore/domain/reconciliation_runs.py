"""Reconciliation runs, their exceptions and adjustments, as pure data (docs/reconciliation.md "Runs", "Exceptions
and adjustments", "Reports"). No I/O: the service (moncore.reconciliation.service) reads and writes, this decides.

- A run is identified by (tenant, provider, date): its id derives from them, so the same day is reconciled once and a
  second start finds the first run. A FAILED run may be started again: a new attempt of the same run.
- Every result of the matcher that is not `matched` becomes an exception, whose id derives from the run, the attempt
  and the lines and items it names (a retried task writes the same exceptions, never more).
- Amounts are signed from the BANK ACCOUNT's point of view, as in the matcher (moncore.domain.reconciliation): a
  credit at the bank (money in) is positive. `difference_minor` of a result = bank - ledger.
- The balance check compares the bank's closing balance with what the ledger says the bank must hold: the clients'
  balances (what the tenant owes its users) plus the items in flight (booked in the ledger, not yet at the bank), and
  says how much of the difference the day's exceptions explain (`residual_minor` = what nothing explains).
- An adjustment books an exception's difference between the safeguarding mirror and a suspense account, after a
  second admin approved it (four-eyes): the books then show what the bank shows, and the suspense account what is
  still to be explained to a client or the bank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from moncore.domain.errors import ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.reconciliation import (
    AMOUNT_MISMATCH,
    CURRENCY_MISMATCH,
    DUPLICATE,
    MATCHED,
    MISSING_AT_BANK,
    MISSING_IN_LEDGER,
    OUTCOMES,
)
from moncore.domain.settlement import SAFEGUARDING

SUSPENSE = "reconciliation_suspense"  # system account purpose: adjusted differences waiting to be explained
ACTOR = "system:reconciliation"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class Step(StrEnum):
    """What the latest version of a run recorded, in pipeline order (statemachines/reconciliation.asl.json)."""

    CLAIMED = "claimed"
    INGESTED = "ingested"
    LOADED = "loaded"
    MATCHED = "matched"
    BALANCED = "balanced"
    REPORTED = "reported"
    COMPLETED = "completed"
    FAILED = "failed"


PIPELINE = (Step.CLAIMED, Step.INGESTED, Step.LOADED, Step.MATCHED, Step.BALANCED, Step.REPORTED, Step.COMPLETED)


class ExceptionStatus(StrEnum):
    OPEN = "open"
    ADJUSTMENT_PROPOSED = "adjustment_proposed"
    RESOLVED = "resolved"


class AdjustmentStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"


def run_id_of(tenant_id: str, provider: str, day: str) -> str:
    return derived_id("rec", tenant_id, provider, day)


def done(step: str, wanted: Step) -> bool:
    """Whether a run whose latest step is `step` has already done `wanted` (a retried task answers from the record)."""
    if step == Step.FAILED:
        return False
    return PIPELINE.index(Step(step)) >= PIPELINE.index(wanted)


# The task (statemachines/reconciliation.asl.json, functions/reconciliation/app.py) that records each step.
TASKS = {
    Step.INGESTED: "ingest",
    Step.LOADED: "load_ledger",
    Step.MATCHED: "match",
    Step.BALANCED: "balance_check",
    Step.REPORTED: "write_report",
    Step.COMPLETED: "complete",
}


def failed_task(step: str) -> str:
    """The task that failed on a run whose latest recorded step is `step`: the one that records the next step."""
    if step in (Step.COMPLETED, Step.FAILED):
        return step
    return TASKS[PIPELINE[PIPELINE.index(Step(step)) + 1]]


# ---------------------------------------------------------------- results -> exceptions
def exception_id_of(run_id: str, attempt: int, result: Mapping[str, Any]) -> str:
    """Deterministic per (run, attempt, outcome, lines, items): a retried report writes the same exceptions."""
    return derived_id(
        "rex",
        run_id,
        str(attempt),
        str(result["outcome"]),
        str(result.get("side") or ""),
        ",".join(result["bank_line_ids"]),
        ",".join(result["txn_ids"]),
    )


def is_exception(result: Mapping[str, Any]) -> bool:
    return str(result["outcome"]) != MATCHED


def difference_minor(result: Mapping[str, Any]) -> int | None:
    """What the bank shows more (+) or less (-) than the ledger for this result; None when the two sides are in
    different currencies (a currency mismatch has no single difference)."""
    if result["outcome"] == CURRENCY_MISMATCH or (
        result["currency"] and result["ledger_currency"] and result["currency"] != result["ledger_currency"]
    ):
        return None
    return int(result["bank_minor"]) - int(result["ledger_minor"])


def adjustable(result: Mapping[str, Any]) -> int:
    """The signed difference an adjustment books for this exception; ValidationFailed when there is none."""
    if result["outcome"] not in (MISSING_IN_LEDGER, MISSING_AT_BANK, AMOUNT_MISMATCH, DUPLICATE):
        raise ValidationFailed(
            f"a {result['outcome']} exception cannot be adjusted in the ledger: it needs a correction by the bank",
            errors=[{"loc": ["path", "exception_id"], "msg": f"outcome {result['outcome']} is not adjustable"}],
        )
    difference = difference_minor(result)
    if not difference:
        raise ValidationFailed(
            "this exception has no amount difference to adjust",
            errors=[{"loc": ["path", "exception_id"], "msg": "difference is zero"}],
        )
    return difference


def adjustment_purposes(difference: int) -> tuple[str, str]:
    """(debited, credited) system account purposes of the adjustment of `difference` (bank - ledger).

    The safeguarding mirror holds the bank's view with the ledger's sign (a credit at the bank is a debit of the
    mirror, as a funding debits its clearing account): the bank holding more (difference > 0) debits the mirror and
    credits suspense (money there that nobody's balance explains yet); holding less does the reverse."""
    return (SAFEGUARDING, SUSPENSE) if difference > 0 else (SUSPENSE, SAFEGUARDING)


# ---------------------------------------------------------------- balance check
@dataclass
class Tally:
    """What the day's results contribute to the balance check of one currency, accumulated while matching."""

    in_flight_minor: int = 0
    exceptions_minor: int = 0

    def record(self) -> dict[str, int]:
        return {"in_flight_minor": self.in_flight_minor, "exceptions_minor": self.exceptions_minor}


def tally(tallies: dict[str, Tally], result: Mapping[str, Any]) -> None:
    """Add one result: a ledger item the bank has not booked (missing_at_bank) is in flight (its bank-view amount
    negated: a funding the clients already hold but the bank has not received lowers what the bank should show);
    every other exception's difference is unexplained by timing (`exceptions_minor`, in the bank's currency)."""
    outcome = result["outcome"]
    if outcome == MATCHED:
        return
    if outcome == MISSING_AT_BANK:
        tallies.setdefault(result["ledger_currency"], Tally()).in_flight_minor -= int(result["ledger_minor"])
        return
    if outcome == CURRENCY_MISMATCH:
        tallies.setdefault(result["currency"], Tally()).exceptions_minor += int(result["bank_minor"])
        tallies.setdefault(result["ledger_currency"], Tally()).exceptions_minor -= int(result["ledger_minor"])
        return
    currency = result["currency"] or result["ledger_currency"]
    tallies.setdefault(currency, Tally()).exceptions_minor += int(result["bank_minor"]) - int(result["ledger_minor"])


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    currency: str
    bank_closing_minor: int | None  # the statement's closing booked balance (CLBD), None when it states none
    bank_closing_date: str | None
    client_balances_minor: int  # the tenant's user accounts at the end of the day (what it owes its clients)
    in_flight_minor: int
    exceptions_minor: int

    @property
    def expected_bank_minor(self) -> int:
        return self.client_balances_minor + self.in_flight_minor

    @property
    def difference_minor(self) -> int | None:
        return None if self.bank_closing_minor is None else self.bank_closing_minor - self.expected_bank_minor

    def record(self) -> dict[str, Any]:
        difference = self.difference_minor
        residual = None if difference is None else difference - self.exceptions_minor
        return {
            "currency": self.currency,
            "bank_closing_minor": self.bank_closing_minor,
            "bank_closing_date": self.bank_closing_date,
            "client_balances_minor": self.client_balances_minor,
            "in_flight_minor": self.in_flight_minor,
            "expected_bank_minor": self.expected_bank_minor,
            "difference_minor": difference,
            "exceptions_minor": self.exceptions_minor,
            "residual_minor": residual,
            "balanced": difference == 0,
            "explained": residual == 0,
        }


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


# ---------------------------------------------------------------- report rows
REPORT_COLUMNS = (
    "outcome",
    "exception_id",
    "rule",
    "shape",
    "date",
    "currency",
    "bank_minor",
    "ledger_currency",
    "ledger_minor",
    "difference_minor",
    "reference",
    "day_gap",
    "side",
    "bank_line_ids",
    "txn_ids",
)


def report_row(result: Mapping[str, Any], exception_id: str | None) -> list[str]:
    """One CSV row (REPORT_COLUMNS) of a result; ids are joined with ';'."""
    values: dict[str, Any] = {**result, "exception_id": exception_id or ""}
    values["bank_line_ids"] = ";".join(result["bank_line_ids"])
    values["txn_ids"] = ";".join(result["txn_ids"])
    return ["" if values.get(column) is None else str(values[column]) for column in REPORT_COLUMNS]


def completion_document(run: dict[str, Any], completed_at: str) -> dict[str, Any]:
    """What a completed run attests, signed with the evidence key over its RFC 8785 canonical JSON: which statement
    (its SHA-256) was reconciled against the ledger for (tenant, provider, date), the counts per result, and the
    SHA-256 of report.json (which carries the balance check and every result) and report.csv. Small by design (KMS
    signs at most 4 KiB raw): the reports carry the detail, their hashes bind it."""
    statement = run.get("statement") or {}
    return {
        "format": "moncore-reconciliation/1",
        "run_id": run["id"],
        "tenant_id": run["tenant_id"],
        "provider": run["provider"],
        "date": run["date"],
        "attempt": run["attempt"],
        "statement_sha256": statement.get("sha256"),
        "counts": run["counts"],
        "reports": {name: report["sha256"] for name, report in sorted(run["reports"].items())},
        "completed_at": completed_at,
    }
