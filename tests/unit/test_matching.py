"""Matching rules (moncore.domain.reconciliation) and the streaming matcher (moncore.reconciliation.matching):
docs/reconciliation.md "Matching".

Every result kind is produced from the smallest input that shows it; the streaming matcher is then proven equal to a
plain in-memory application of the same rules on randomized inputs, with the spools forced to spill to disk.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Iterable
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moncore.domain.reconciliation import (
    AMOUNT_MISMATCH,
    CURRENCY_MISMATCH,
    DUPLICATE,
    MATCHED,
    MISSING_AT_BANK,
    MISSING_IN_LEDGER,
    RULE_AMOUNT_DATE,
    RULE_IDENTITY,
    RULE_REFERENCE,
    RULE_SUM_WINDOW,
    BankLine,
    LedgerItem,
    MatchResult,
    bank_line,
    check_balance,
    in_flight_minor,
    ledger_item,
    match_amount_group,
    match_reference_group,
    match_sums,
    normalise_reference,
    split_duplicates,
    unmatched,
)
from moncore.domain.statements import StatementEntry
from moncore.reconciliation.matching import Reconciler, reconcile
from moncore.reconciliation.statements import entries

DAY = date(2026, 11, 20).toordinal()


def line(
    line_id: str,
    amount: int,
    *,
    ref: str | None = None,
    day: int = 0,
    currency: str = "EUR",
    statement: str = "S1",
    identity: int | None = None,
    content: int | None = None,
) -> BankLine:
    return BankLine(line_id, normalise_reference(ref), amount, currency, DAY + day, statement, identity, content)


def item(txn_id: str, amount: int, *, ref: str | None = None, day: int = 0, currency: str = "EUR") -> LedgerItem:
    return LedgerItem(txn_id, normalise_reference(ref), amount, currency, DAY + day)


def run(lines: Iterable[BankLine], items: Iterable[LedgerItem], **options: int) -> list[MatchResult]:
    results, _ = reconcile(lines, items, **options)
    return results


def outcomes(results: list[MatchResult]) -> list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]]:
    return sorted((r.outcome, r.rule, r.shape, r.bank_line_ids, r.txn_ids) for r in results)


# ----------------------------------------------------------------------------------------------- each result kind


def test_matched_by_reference_ignores_case_spaces_and_the_date_gap() -> None:
    (result,) = run([line("L1", 1000, ref="e2e 0001", day=0)], [item("T1", 1000, ref="E2E0001", day=9)])
    assert (result.outcome, result.rule, result.shape, result.reference) == (MATCHED, RULE_REFERENCE, "1:1", "E2E0001")
    assert (result.bank_line_ids, result.txn_ids, result.day_gap, result.difference_minor) == (("L1",), ("T1",), 9, 0)
    assert result.to_dict()["date"] == "2026-11-20"


def test_matched_by_amount_currency_and_date_within_the_tolerance() -> None:
    results = run(
        [line("L1", 2500, day=0), line("L2", 2500, day=10), line("L3", 2500, day=20, currency="USD")],
        [item("T1", 2500, day=2), item("T2", 2500, day=13), item("T3", 2500, day=20)],
        tolerance_days=2,
    )
    assert outcomes(results) == [
        (MATCHED, RULE_AMOUNT_DATE, "1:1", ("L1",), ("T1",)),  # two days apart: inside
        (MISSING_AT_BANK, "", "0:1", (), ("T2",)),  # three days apart: outside
        (MISSING_AT_BANK, "", "0:1", (), ("T3",)),  # same amount and day, other currency
        (MISSING_IN_LEDGER, "", "1:0", ("L2",), ()),
        (MISSING_IN_LEDGER, "", "1:0", ("L3",), ()),
    ]


def test_a_bank_reference_the_ledger_does_not_know_falls_back_to_amount_and_date() -> None:
    (result,) = run([line("L1", 700, ref="BANK-ONLY-9")], [item("T1", 700, ref="PROVIDER-3", day=1)])
    assert (result.outcome, result.rule, result.reference) == (MATCHED, RULE_AMOUNT_DATE, "BANK-ONLY-9")


def test_one_bank_line_settles_several_ledger_items_by_reference() -> None:
    (result,) = run(
        [line("L1", 3000, ref="BATCH-1")], [item(f"T{k}", a, ref="BATCH-1") for k, a in enumerate((1000, 1500, 500))]
    )
    assert (result.outcome, result.rule, result.shape) == (MATCHED, RULE_REFERENCE, "1:n")
    assert (result.bank_line_ids, result.txn_ids, result.bank_minor, result.ledger_minor) == (
        ("L1",),
        ("T0", "T1", "T2"),
        3000,
        3000,
    )


def test_several_bank_lines_settle_one_ledger_item_by_reference() -> None:
    (result,) = run([line("L1", -400, ref="P-7"), line("L2", -600, ref="P-7")], [item("T1", -1000, ref="P-7")])
    assert (result.outcome, result.shape, result.bank_line_ids, result.txn_ids) == (
        MATCHED,
        "n:1",
        ("L1", "L2"),
        ("T1",),
    )


def test_one_to_n_and_n_to_one_without_reference_by_sums_within_the_window() -> None:
    results = run(
        [line("L1", 900, day=0), line("L2", 250, day=5), line("L3", 350, day=5)],
        [item("T1", 400, day=0), item("T2", 500, day=1), item("T3", 600, day=5)],
    )
    assert outcomes(results) == [
        (MATCHED, RULE_SUM_WINDOW, "1:n", ("L1",), ("T1", "T2")),
        (MATCHED, RULE_SUM_WINDOW, "n:1", ("L2", "L3"), ("T3",)),
    ]


def test_amount_mismatch_by_reference_names_both_sides_and_the_difference() -> None:
    (result,) = run([line("L1", 10000, ref="R1")], [item("T1", 9950, ref="R1")])
    assert (result.outcome, result.rule, result.bank_minor, result.ledger_minor, result.difference_minor) == (
        AMOUNT_MISMATCH,
        RULE_REFERENCE,
        10000,
        9950,
        50,
    )
    # Several on a side that do not add up: one mismatch naming all of them.
    (group,) = run([line("L1", 100, ref="R2"), line("L2", 200, ref="R2")], [item("T1", 250, ref="R2")])
    assert (group.outcome, group.shape, group.bank_minor, group.ledger_minor) == (AMOUNT_MISMATCH, "n:1", 300, 250)


def test_currency_mismatch_by_reference() -> None:
    (result,) = run([line("L1", 10000, ref="R1", currency="EUR")], [item("T1", 10000, ref="R1", currency="USD")])
    assert (result.outcome, result.currency, result.ledger_currency, result.difference_minor) == (
        CURRENCY_MISMATCH,
        "EUR",
        "USD",
        0,
    )


def test_missing_in_ledger_and_missing_at_bank() -> None:
    results = run([line("L1", 100, ref="ONLY-BANK")], [item("T1", -100, ref="ONLY-LEDGER")])
    assert outcomes(results) == [
        (MISSING_AT_BANK, "", "0:1", (), ("T1",)),
        (MISSING_IN_LEDGER, "", "1:0", ("L1",), ()),
    ]


def test_duplicates_on_the_bank_side() -> None:
    results = run(
        [
            line("S1#1", 500, ref="A"),
            line("S1#1", 500, ref="A"),  # the same statement ingested twice
            line("S1#2", 700, identity=42),
            line("S2#9", 700, identity=42, statement="S2"),  # the bank's own id again
            line("S1#3", 900, content=7),
            line("S3#1", 900, content=7, statement="S3"),  # the same content in an overlapping statement
            line("S1#4", 300, content=8),
            line("S1#5", 300, content=8),  # twice in ONE statement: two real payments, not a duplicate
        ],
        [item("T1", 500, ref="A"), item("T2", 700), item("T3", 900), item("T4", 300), item("T5", 300)],
    )
    duplicates = [r for r in results if r.outcome == DUPLICATE]
    assert sorted((r.bank_line_ids, r.rule, r.side) for r in duplicates) == [
        (("S1#1",), RULE_IDENTITY, "bank"),
        (("S2#9",), RULE_IDENTITY, "bank"),
        (("S3#1",), RULE_IDENTITY, "bank"),
    ]
    assert Counter(r.outcome for r in results) == {MATCHED: 5, DUPLICATE: 3}


def test_a_reference_posted_twice_in_the_ledger_is_a_duplicate() -> None:
    results = run([line("L1", 500, ref="PAY-1")], [item("T1", 500, ref="PAY-1"), item("T2", 500, ref="PAY-1")])
    assert outcomes(results) == [
        (DUPLICATE, RULE_REFERENCE, "0:1", (), ("T2",)),
        (MATCHED, RULE_REFERENCE, "1:1", ("L1",), ("T1",)),
    ]
    (dup,) = [r for r in results if r.outcome == DUPLICATE]
    assert dup.side == "ledger"


def test_statement_that_matches_differs_lacks_and_has_an_extra_line() -> None:
    """Issue 6: a statement that matches, differs in amount, lacks an item and has an extra one names exactly those."""
    mt940 = (
        ":20:DAY-1\n:25:DE89370400440532013000\n:28C:1\n:60F:C261119EUR1000,00\n"
        ":61:261120C250,00NTRFPAY-MATCH\n"
        ":61:261120D99,90NTRFPAY-DIFF\n"
        ":61:261120C12,34NTRFNONREF//BANK-EXTRA\n"
        ":62F:C261120EUR1162,44\n"
    )
    lines = [bank_line(e) for e in entries(io.BytesIO(mt940.encode()), name="day.sta")]
    items = [
        ledger_item("txn-match", "PAY-MATCH", 25000, "EUR", "2026-11-20"),
        ledger_item("txn-diff", "PAY-DIFF", -9999, "EUR", "2026-11-20"),
        ledger_item("txn-lacking", "PAY-LACKING", -5000, "EUR", "2026-11-19"),
    ]
    results = run(lines, items)
    assert outcomes(results) == [
        (AMOUNT_MISMATCH, RULE_REFERENCE, "1:1", ("DAY-1/1#2",), ("txn-diff",)),
        (MATCHED, RULE_REFERENCE, "1:1", ("DAY-1/1#1",), ("txn-match",)),
        (MISSING_AT_BANK, "", "0:1", (), ("txn-lacking",)),
        (MISSING_IN_LEDGER, "", "1:0", ("DAY-1/1#3",), ()),
    ]
    diff = next(r for r in results if r.outcome == AMOUNT_MISMATCH)
    assert (diff.bank_minor, diff.ledger_minor, diff.difference_minor) == (-9990, -9999, 9)
    extra = next(r for r in results if r.outcome == MISSING_IN_LEDGER)
    assert (extra.reference, extra.bank_minor) == ("BANK-EXTRA", 1234)


# ----------------------------------------------------------------------------------- statement entries as lines


def _entry(**changes: object) -> StatementEntry:
    base: dict[str, object] = {
        "statement_id": "S1",
        "account": "DE89370400440532013000",
        "booking_date": "2026-11-20",
        "value_date": "2026-11-21",
        "amount_minor": 1234,
        "currency": "EUR",
        "direction": "DBIT",
        "reference": " ref-1 ",
        "counterparty": "Bob",
        "account_servicer_ref": "BANK-1",
        "entry_ref": "S1#3.2",
    }
    return StatementEntry(**{**base, **changes})  # type: ignore[arg-type]


def test_bank_line_of_a_statement_entry() -> None:
    b = bank_line(_entry())
    assert (b.line_id, b.reference, b.amount_minor, b.currency, b.day, b.statement_id) == (
        "S1#3.2",
        "REF-1",
        -1234,  # a debit is negative from the account's point of view
        "EUR",
        date(2026, 11, 20).toordinal(),  # the booking date first
        "S1",
    )
    assert bank_line(_entry(booking_date=None)).day == date(2026, 11, 21).toordinal()
    no_dates = _entry(booking_date=None, value_date=None)
    assert bank_line(no_dates, default_date="2026-11-22").day == date(2026, 11, 22).toordinal()
    # The parts of one split batch share the entry's bank id, and stay apart.
    assert bank_line(_entry(entry_ref="S1#3.1")).identity != bank_line(_entry(entry_ref="S1#3.2")).identity
    # The same line of the same statement delivered again has the same identity and content.
    assert bank_line(_entry()) == bank_line(_entry())


def test_a_line_without_any_date_is_refused() -> None:
    from moncore.domain.errors import StatementMalformed

    with pytest.raises(StatementMalformed):
        bank_line(_entry(booking_date=None, value_date=None))


# --------------------------------------------------------------------------------------- the pure rule functions


def test_reference_group_pairs_equal_amounts_first() -> None:
    results, left_lines, left_items = match_reference_group(
        "R", [line("L1", 100), line("L2", 300)], [item("T1", 100), item("T2", 100), item("T3", 300)]
    )
    assert sorted((r.outcome, r.bank_line_ids, r.txn_ids) for r in results) == [
        (DUPLICATE, (), ("T2",)),
        (MATCHED, ("L1",), ("T1",)),
        (MATCHED, ("L2",), ("T3",)),
    ]
    assert (left_lines, left_items) == ([], [])


def test_amount_group_pairs_the_nearest_dates_greedily() -> None:
    same = [line("L1", 50, day=0), line("L2", 50, day=4)]
    results, left_lines, left_items = match_amount_group(same, [item("T1", 50, day=3), item("T2", 50, day=9)], 2)
    assert [(r.bank_line_ids, r.txn_ids) for r in results] == [(("L2",), ("T1",))]
    assert [b.line_id for b in left_lines] == ["L1"]
    assert [i.txn_id for i in left_items] == ["T2"]


def test_sums_are_not_a_general_subset_search() -> None:
    """Among more than SUM_SMALL_POOL unexplained items an arbitrary subset that adds up is not taken."""
    items = [item(f"T{k}", a) for k, a in enumerate((100, 200, 300, 400, 500))]
    results, left_lines, _ = match_sums([line("L1", 700)], items, 2)
    assert results == []
    assert [b.line_id for b in left_lines] == ["L1"]
    # A pool of at most four: any subset, the nearest first.
    results, _, left_items = match_sums([line("L1", 700, day=0)], [*items[1:4], item("T9", 400, day=2)], 2)
    assert [(r.txn_ids, r.rule) for r in results] == [(("T2", "T3"), RULE_SUM_WINDOW)]
    assert sorted(i.txn_id for i in left_items) == ["T1", "T9"]


def test_sums_never_mix_signs_or_take_zero() -> None:
    results, left_lines, left_items = match_sums(
        [line("L1", 100), line("L0", 0)], [item("T1", 150), item("T2", -50), item("T0", 0)], 2
    )
    assert results == []
    assert (len(left_lines), len(left_items)) == (2, 3)


def test_split_duplicates_keeps_the_first_in_input_order() -> None:
    kept, duplicates = split_duplicates([line("A", 1), line("B", 2), line("A", 1)])
    assert [b.line_id for b in kept] == ["A", "B"]
    assert [d.bank_line_ids for d in duplicates] == [("A",)]


def test_unmatched_names_each_side() -> None:
    assert [(r.outcome, r.shape) for r in unmatched([line("L", 1)], [item("T", 2)])] == [
        (MISSING_IN_LEDGER, "1:0"),
        (MISSING_AT_BANK, "0:1"),
    ]


# ------------------------------------------------------------------------------------------------ balance check


def test_balance_check_and_in_flight() -> None:
    results = run([], [item("T1", -3000, day=0), item("T2", 1000, day=-5), item("T3", -700, currency="USD")])
    # What the bank has still to book of the EUR items since the run day: the payout's 30.00 is still on it.
    assert in_flight_minor(results, currency="EUR", since_day=DAY) == 3000
    assert in_flight_minor(results, currency="EUR") == 2000
    check = check_balance(currency="EUR", bank_closing_minor=103000, client_balances_minor=100000, in_flight_minor=3000)
    assert (check.expected_minor, check.difference_minor, check.balanced) == (103000, 0, True)
    off = check_balance(currency="EUR", bank_closing_minor=102990, client_balances_minor=100000, in_flight_minor=3000)
    assert (off.difference_minor, off.balanced, off.to_dict()["balanced"]) == (-10, False, False)
    with pytest.raises(TypeError):
        check_balance(currency="EUR", bank_closing_minor=1.5, client_balances_minor=0)  # type: ignore[arg-type]


# -------------------------------------------------------------------- determinism and the streaming driver


def _oracle(
    lines: list[BankLine], items: list[LedgerItem], tolerance_days: int, sum_rule_max_records: int
) -> list[MatchResult]:
    """The rules applied in their order to whole lists (no partitions, no spill files): what the streaming matcher
    must produce, whatever its partitions and memory."""
    results: list[MatchResult] = []
    kept, duplicates = split_duplicates(lines)
    results += duplicates
    lines_by_ref: dict[str, list[BankLine]] = {}
    items_by_ref: dict[str, list[LedgerItem]] = {}
    rest_lines = [b for b in kept if b.reference is None]
    rest_items = [i for i in items if i.reference is None]
    for b in kept:
        if b.reference is not None:
            lines_by_ref.setdefault(b.reference, []).append(b)
    for i in items:
        if i.reference is not None:
            items_by_ref.setdefault(i.reference, []).append(i)
    for reference in lines_by_ref.keys() | items_by_ref.keys():
        group_lines, group_items = lines_by_ref.get(reference, []), items_by_ref.get(reference, [])
        if group_lines and group_items:
            found, group_lines, group_items = match_reference_group(reference, group_lines, group_items)
            results += found
        rest_lines += group_lines
        rest_items += group_items
    by_amount: dict[tuple[str, int], tuple[list[BankLine], list[LedgerItem]]] = {}
    for b in rest_lines:
        by_amount.setdefault((b.currency, b.amount_minor), ([], []))[0].append(b)
    for i in rest_items:
        by_amount.setdefault((i.currency, i.amount_minor), ([], []))[1].append(i)
    by_sign: dict[tuple[str, int], tuple[list[BankLine], list[LedgerItem]]] = {}
    for (currency, amount), (amount_lines, amount_items) in by_amount.items():
        left_lines, left_items = amount_lines, amount_items
        if amount_lines and amount_items:
            found, left_lines, left_items = match_amount_group(amount_lines, amount_items, tolerance_days)
            results += found
        sign = (amount > 0) - (amount < 0)
        by_sign.setdefault((currency, sign), ([], []))[0].extend(left_lines)
        by_sign[(currency, sign)][1].extend(left_items)
    for (_, sign), (sign_lines, sign_items) in by_sign.items():
        left_lines, left_items = sign_lines, sign_items
        if sign != 0 and len(sign_lines) + len(sign_items) <= sum_rule_max_records and sign_lines and sign_items:
            found, left_lines, left_items = match_sums(sign_lines, sign_items, tolerance_days)
            results += found
        results += unmatched(left_lines, left_items)
    return results


def _random_day(rng: random.Random, size: int) -> tuple[list[BankLine], list[LedgerItem]]:
    """A day of every kind of case, drawn at random: references shared or not, amounts that collide on purpose (a
    few hundred distinct), dates spread over a week, two currencies, duplicated and overlapping lines."""
    lines: list[BankLine] = []
    items: list[LedgerItem] = []
    amounts = [rng.choice((1, -1)) * rng.randrange(1, 400) * 25 for _ in range(300)]
    for n in range(size):
        kind = rng.random()
        amount, day = rng.choice(amounts), rng.randrange(7)
        currency = "EUR" if rng.random() < 0.8 else "USD"
        ref = f"R{rng.randrange(size)}" if rng.random() < 0.7 else None
        stmt = f"S{day}"
        if kind < 0.55:  # both sides, maybe different dates, maybe the reference only on one side
            lines.append(line(f"{stmt}#{n}", amount, ref=ref, day=day, currency=currency, statement=stmt, content=n))
            other_ref = ref if rng.random() < 0.8 else None
            items.append(item(f"T{n}", amount, ref=other_ref, day=day + rng.randrange(-3, 4), currency=currency))
        elif kind < 0.65:  # split in parts on one side
            parts = [amount // 2, amount - amount // 2]
            if rng.random() < 0.5:
                lines.append(line(f"{stmt}#{n}", amount, ref=ref, day=day, currency=currency, statement=stmt))
                items += [item(f"T{n}.{k}", p, ref=ref, day=day, currency=currency) for k, p in enumerate(parts)]
            else:
                lines += [line(f"{stmt}#{n}.{k}", p, ref=ref, day=day, statement=stmt) for k, p in enumerate(parts)]
                items.append(item(f"T{n}", amount, ref=ref, day=day + 1))
        elif kind < 0.72:  # amounts differ, or currencies
            lines.append(line(f"{stmt}#{n}", amount, ref=ref or f"X{n}", day=day, statement=stmt))
            if rng.random() < 0.5:
                items.append(item(f"T{n}", amount + 5, ref=ref or f"X{n}", day=day))
            else:
                items.append(item(f"T{n}", amount, ref=ref or f"X{n}", day=day, currency="GBP"))
        elif kind < 0.8:  # duplicates: a line delivered again, an overlapping statement, a bank id twice
            first = line(f"{stmt}#{n}", amount, ref=ref, day=day, statement=stmt, content=10**6 + n, identity=n)
            lines.append(first)
            repeat = rng.choice(
                (first, first._replace(line_id=f"O{stmt}#{n}", statement_id=f"O{stmt}", identity=None)),
            )
            lines.append(repeat)
            items.append(item(f"T{n}", amount, ref=ref, day=day))
        elif kind < 0.9:
            lines.append(line(f"{stmt}#{n}", amount, ref=ref, day=day, currency=currency, statement=stmt))
        else:
            items.append(item(f"T{n}", amount, ref=ref, day=day, currency=currency))
            if rng.random() < 0.3:  # posted twice
                items.append(item(f"T{n}b", amount, ref=ref, day=day, currency=currency))
    return lines, items


def _accounted(lines: list[BankLine], items: list[LedgerItem], results: list[MatchResult]) -> None:
    """Every line and item is named by exactly one result (a duplicate line once more for its repeat)."""
    named_lines = Counter(line_id for r in results for line_id in r.bank_line_ids)
    named_items = Counter(txn_id for r in results for txn_id in r.txn_ids)
    assert named_lines == Counter(b.line_id for b in lines)
    assert named_items == Counter(i.txn_id for i in items)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_streaming_matcher_spilled_to_disk_equals_the_rules_in_memory(seed: int) -> None:
    rng = random.Random(seed)
    lines, items = _random_day(rng, 1500)
    rng.shuffle(items)
    expected = _oracle(lines, items, tolerance_days=2, sum_rule_max_records=400)
    reconciler = Reconciler(
        tolerance_days=2, partitions=7, memory_records=60, chunk_records=5, sum_rule_max_records=400
    )
    streamed = list(reconciler.run(iter(lines), iter(items)))
    assert reconciler.summary.spilled
    assert reconciler.summary.spilled_bytes > 0
    assert sorted(streamed) == sorted(expected)
    assert (reconciler.summary.bank_lines, reconciler.summary.ledger_items) == (len(lines), len(items))
    assert sum(reconciler.summary.results.values()) == len(streamed)
    assert set(Counter(r.outcome for r in streamed)) == {
        MATCHED,
        AMOUNT_MISMATCH,
        CURRENCY_MISMATCH,
        DUPLICATE,
        MISSING_IN_LEDGER,
        MISSING_AT_BANK,
    }
    _accounted(lines, items, streamed)
    in_memory = list(Reconciler(tolerance_days=2, sum_rule_max_records=400).run(lines, items))
    assert in_memory == list(Reconciler(tolerance_days=2, sum_rule_max_records=400).run(lines, items))  # determinism
    assert sorted(in_memory) == sorted(streamed)


def test_the_sum_rule_cap_streams_a_broken_day_out_as_missing() -> None:
    lines = [line(f"L{k}", 100 + k) for k in range(30)]
    items = [item("T1", 40), item("T2", 60)]  # would sum to L0's 100 under the sum rule
    capped = run(lines, items, sum_rule_max_records=10)
    assert Counter(r.outcome for r in capped) == {MISSING_IN_LEDGER: 30, MISSING_AT_BANK: 2}
    uncapped = run(lines, items, sum_rule_max_records=1000, memory_records=5)
    assert Counter(r.outcome for r in uncapped) == {MATCHED: 1, MISSING_IN_LEDGER: 29}
    (matched,) = [r for r in uncapped if r.outcome == MATCHED]
    assert (matched.bank_line_ids, matched.txn_ids, matched.shape) == (("L0",), ("T1", "T2"), "1:n")


def test_results_do_not_depend_on_the_input_order() -> None:
    rng = random.Random(7)
    lines, items = _random_day(rng, 600)
    lines = [b for b in lines if not b.line_id.startswith("O")]  # without duplicates: which one is first is order
    lines = list({b.line_id: b for b in lines}.values())
    baseline = sorted(run(lines, items))
    for _ in range(3):
        rng.shuffle(lines)
        rng.shuffle(items)
        assert sorted(run(lines, items, partitions=5)) == baseline


def test_the_generator_cleans_up_when_closed_early(tmp_path: object) -> None:
    import gc
    from pathlib import Path

    workdir = Path(str(tmp_path))
    reconciler = Reconciler(workdir=str(workdir), memory_records=1)
    stream = reconciler.run([line(f"L{k}", k + 1, ref=f"R{k}") for k in range(50)], [item("T", 1, ref="R0")])
    next(stream)
    assert list(workdir.iterdir())  # the private spill directory exists while the run is open
    assert not gc.isenabled()
    stream.close()
    assert gc.isenabled()
    assert list(workdir.iterdir()) == []


def test_reconciler_refuses_nonsense_options() -> None:
    with pytest.raises(ValueError):
        Reconciler(partitions=0)
    with pytest.raises(ValueError):
        Reconciler(tolerance_days=-1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10**6),
    size=st.integers(min_value=0, max_value=120),
    partitions=st.integers(min_value=1, max_value=9),
    memory_records=st.integers(min_value=0, max_value=80),
    chunk_records=st.integers(min_value=1, max_value=9),
    tolerance_days=st.integers(min_value=0, max_value=3),
)
def test_property_streaming_equals_in_memory_for_any_partitioning(
    seed: int, size: int, partitions: int, memory_records: int, chunk_records: int, tolerance_days: int
) -> None:
    lines, items = _random_day(random.Random(seed), size)
    streamed = run(
        lines,
        items,
        tolerance_days=tolerance_days,
        partitions=partitions,
        memory_records=memory_records,
        chunk_records=chunk_records,
        sum_rule_max_records=60,
    )
    assert sorted(streamed) == sorted(_oracle(lines, items, tolerance_days, 60))
    _accounted(lines, items, streamed)
