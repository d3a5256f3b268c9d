"""Matching rules of reconciliation (docs/reconciliation.md), pure and in memory: one partition at a time.

The streaming driver (`moncore.reconciliation.matching`) cuts a day's million bank lines and ledger items into
partitions small enough for memory and calls these functions on each; everything here is deterministic and does no
I/O, so a partition's result depends on its contents alone.

Signs: every amount is signed from the BANK ACCOUNT's point of view: a bank credit (CRDT, money in) is positive, a
debit negative; a ledger item carries the signed amount it should produce on that account (a funding +, a payout -).

Rules, in order (each later rule sees only what the earlier ones left):
1. Duplicates of a bank line: the same line id twice (a statement ingested twice), the same bank id (AcctSvcrRef /
   MT940 bank reference, with the same amount and reference) twice, or the same content in two different statements
   (overlapping statements). The first is kept; the others are `duplicate` (side "bank").
2. Reference (`match_reference_group`), per provider reference and currency: equal amounts pair 1:1 (nearest dates
   first); what remains on both sides matches when it sums equal (1:n: one bank line settles n ledger items; n:1: n
   bank lines settle one item; n:m), else it is one `amount_mismatch` naming every line and item. What remains on one
   side only is a `duplicate` when it repeats an amount this reference already matched ("same reference twice"), else
   it goes on to rule 3. A reference whose bank lines and ledger items are left in different currencies is a
   `currency_mismatch`. The date is not checked for a reference match (the reference is the stronger key); the gap
   is reported.
3. Amount and date (`match_amount_group`): same currency and signed amount, dates at most `tolerance_days` apart,
   1:1, earliest first (greedy in date order gives the largest number of pairs for a symmetric window).
4. Sum within the window (`match_sums`): one line against several items of the same currency and sign inside the
   window whose amounts add up exactly (and the reverse): all of the window, all of the same day, or any subset of a
   pool of at most SUM_SMALL_POOL (not a general subset sum: a coincidental sum among many unexplained lines would
   hide two exceptions behind a false match).
5. What is left: bank lines are `missing_in_ledger`, ledger items `missing_at_bank`.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from operator import countOf, itemgetter
from typing import Final, Generic, NamedTuple, TypeVar

from moncore.domain.errors import StatementMalformed
from moncore.domain.statements import StatementEntry

MATCHED = "matched"
MISSING_IN_LEDGER = "missing_in_ledger"
MISSING_AT_BANK = "missing_at_bank"
AMOUNT_MISMATCH = "amount_mismatch"
CURRENCY_MISMATCH = "currency_mismatch"
DUPLICATE = "duplicate"
OUTCOMES = (MATCHED, MISSING_IN_LEDGER, MISSING_AT_BANK, AMOUNT_MISMATCH, CURRENCY_MISMATCH, DUPLICATE)

RULE_REFERENCE = "reference"
RULE_AMOUNT_DATE = "amount_date"
RULE_SUM_WINDOW = "sum_window"
RULE_IDENTITY = "identity"
RULE_NONE = ""

DEFAULT_TOLERANCE_DAYS = 2
SUM_SCAN = 512  # most candidates (free or not) a sum looks at in the date window of one line
SUM_SMALL_POOL = 4  # a pool this small is searched for any subset (at most 11 of them)
_NOT_A_REFERENCE = frozenset({"", "NOTPROVIDED", "NONREF", "NOT PROVIDED", "NONE"})


class BankLine(NamedTuple):
    """A statement line as matching sees it. `identity` is the bank's own id of the line (for duplicates), `content`
    the line's content key (for the same line in two overlapping statements)."""

    line_id: str
    reference: str | None  # normalised (normalise_reference)
    amount_minor: int  # signed: + credit, - debit
    currency: str
    day: int  # date.toordinal()
    statement_id: str
    identity: int | None = None  # 64-bit digest of (account, bank id, amount, reference)
    content: int | None = None  # 64-bit digest of the line's content


# Field positions of a BankLine / LedgerItem, for the streaming driver's hot path over plain (spilled) tuples.
LINE_ID: Final = 0
TXN_ID: Final = 0
REFERENCE: Final = 1
AMOUNT: Final = 2
CURRENCY: Final = 3
DAY: Final = 4
STATEMENT_ID: Final = 5
IDENTITY: Final = 6
CONTENT: Final = 7


class LedgerItem(NamedTuple):
    txn_id: str
    reference: str | None  # the provider reference, normalised
    amount_minor: int  # signed effect on the bank account
    currency: str
    day: int  # date.toordinal() of the effective (value) date


class MatchResult(NamedTuple):
    """One reconciliation outcome. `bank_minor`/`ledger_minor` are the signed sums of the lines and items named (in
    `currency` and `ledger_currency`); `difference_minor` = bank - ledger when both are in one currency."""

    outcome: str
    rule: str
    shape: str  # "1:1", "1:n" (one bank line, n ledger items), "n:1", "n:m", "1:0" (bank only), "0:1" (ledger only)
    bank_line_ids: tuple[str, ...]
    txn_ids: tuple[str, ...]
    currency: str
    ledger_currency: str
    bank_minor: int
    ledger_minor: int
    reference: str | None
    day_gap: int  # largest distance in days between a bank line and a ledger item of the result
    day: int  # earliest date (ordinal) of the lines and items named
    side: str = ""  # for a duplicate: "bank" or "ledger"

    @property
    def difference_minor(self) -> int:
        return self.bank_minor - self.ledger_minor if self.currency == self.ledger_currency else 0

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = self._asdict()
        data["date"] = date.fromordinal(self.day).isoformat()
        data["difference_minor"] = self.difference_minor
        return data


_new_result = tuple.__new__


def normalise_reference(reference: str | None) -> str | None:
    """References compare without case and without spaces ("ref 12-ab" == "REF12-AB"); placeholders are no reference."""
    if reference is None:
        return None
    value = "".join(reference.split()).upper()
    return None if value in _NOT_A_REFERENCE else value


def day_of(text: str) -> int:
    return date.fromisoformat(text).toordinal()


def bank_line(entry: StatementEntry, *, default_date: str | None = None) -> BankLine:
    """The matching view of a statement entry: dated by its booking date, else its value date, else `default_date`
    (a camt.054 notification may carry neither; the caller passes the notification's day)."""
    when = entry.booking_date or entry.value_date or default_date
    if when is None:
        raise StatementMalformed(f"{entry.place or entry.entry_ref}: entry has neither booking nor value date")
    reference = normalise_reference(entry.reference)
    signed = entry.signed_minor
    identity = None
    if entry.account_servicer_ref:
        # The parts of a split batch share the entry's bank id: the part number keeps two equal parts apart.
        part = entry.entry_ref.rpartition("#")[2].partition(".")[2]
        identity = _digest(f"{entry.account}|{entry.account_servicer_ref}|{part}|{signed}|{reference}")
    content = _digest(
        "|".join(
            str(part)
            for part in (
                entry.account,
                entry.booking_date,
                entry.value_date,
                signed,
                entry.currency,
                reference,
                entry.counterparty,
                entry.remittance,
            )
        )
    )
    return BankLine(
        line_id=entry.entry_ref or f"{entry.statement_id}@{entry.place}",
        reference=reference,
        amount_minor=signed,
        currency=entry.currency,
        day=day_of(when),
        statement_id=entry.statement_id,
        identity=identity,
        content=content,
    )


def _digest(text: str) -> int:
    """Compact key (an int, not the long text) so a million lines stay small in memory and in the spill files."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def ledger_item(txn_id: str, reference: str | None, amount_minor: int, currency: str, day: str) -> LedgerItem:
    return LedgerItem(txn_id, normalise_reference(reference), amount_minor, currency, day_of(day))


# ---- results


def _result(
    outcome: str,
    rule: str,
    bank: Sequence[BankLine],
    ledger: Sequence[LedgerItem],
    reference: str | None = None,
    side: str = "",
) -> MatchResult:
    bank_currency = bank[0].currency if bank else ""
    ledger_currency = ledger[0].currency if ledger else ""
    gap = max((abs(b.day - item.day) for b in bank for item in ledger), default=0) if bank and ledger else 0
    return MatchResult(
        outcome=outcome,
        rule=rule,
        shape=f"{_count(len(bank))}:{_count(len(ledger))}",
        bank_line_ids=tuple(b.line_id for b in bank),
        txn_ids=tuple(item.txn_id for item in ledger),
        currency=bank_currency or ledger_currency,
        ledger_currency=ledger_currency or bank_currency,
        bank_minor=sum(b.amount_minor for b in bank),
        ledger_minor=sum(item.amount_minor for item in ledger),
        reference=reference,
        day_gap=gap,
        day=min([b.day for b in bank] + [item.day for item in ledger]),
        side=side,
    )


def _one_to_one(outcome: str, rule: str, b: BankLine, item: LedgerItem, reference: str | None) -> MatchResult:
    """`_result` for one line and one item (the hot path of a million-line run); positional, so plain tuples with a
    BankLine's and a LedgerItem's positions work too."""
    gap = b[DAY] - item[DAY]
    return _new_result(  # the tuple constructor itself: a million of these, and MatchResult() is a Python call
        MatchResult,
        (
            outcome,
            rule,
            "1:1",
            (b[LINE_ID],),
            (item[TXN_ID],),
            b[CURRENCY],
            item[CURRENCY],
            b[AMOUNT],
            item[AMOUNT],
            reference,
            gap if gap >= 0 else -gap,
            b[DAY] if gap <= 0 else item[DAY],
            "",
        ),
    )


def one_to_one_by_reference(b: BankLine, item: LedgerItem) -> MatchResult:
    """Rule 2 for a reference with exactly one line and one item (positional: plain tuples work). The hot path of a
    run (nearly every line goes here), so `_one_to_one` is written out in place."""
    currency, item_currency, amount, item_amount = b[CURRENCY], item[CURRENCY], b[AMOUNT], item[AMOUNT]
    outcome = MATCHED if amount == item_amount else AMOUNT_MISMATCH
    if currency != item_currency:
        outcome = CURRENCY_MISMATCH
    day, item_day = b[DAY], item[DAY]
    gap = day - item_day
    return _new_result(
        MatchResult,
        (
            outcome,
            RULE_REFERENCE,
            "1:1",
            (b[LINE_ID],),
            (item[TXN_ID],),
            currency,
            item_currency,
            amount,
            item_amount,
            b[REFERENCE],
            gap if gap >= 0 else -gap,
            day if gap <= 0 else item_day,
            "",
        ),
    )


def _count(n: int) -> str:
    return str(n) if n <= 1 else "n"


def fix_shape(result: MatchResult) -> MatchResult:
    """n:n is written n:m (two sides with several members each)."""
    return result._replace(shape="n:m") if result.shape == "n:n" else result


# ---- rule 1: duplicates


def split_duplicates(lines: Iterable[BankLine]) -> tuple[list[BankLine], list[MatchResult]]:
    """The lines to match (first occurrence kept, input order) and a `duplicate` result for each repeat. Reads the
    fields by position, so the streaming driver can pass the plain tuples it spilled (a BankLine's positions).

    Only a line whose id, bank id or content occurs more than once can be (or be repeated by) a duplicate; those are
    found with C-level set and counter passes, and only they go through the sequential rule (nearly every line of a
    day is unique, and this runs over every line of the day)."""
    lines = list(lines)
    repeated = [
        (position, values) for position in (LINE_ID, IDENTITY, CONTENT) if (values := _repeated(lines, position))
    ]
    if not repeated:
        return lines, []
    suspects = sorted(
        {
            k
            for position, values in repeated
            for k, value in enumerate(map(itemgetter(position), lines))
            if value in values
        }
    )
    repeats: set[int] = set()
    duplicates: list[MatchResult] = []
    seen_ids: set[str] = set()
    seen_identity: set[int] = set()
    content_statement: dict[int, str] = {}
    for k in suspects:
        line = lines[k]
        line_id, identity, content = line[LINE_ID], line[IDENTITY], line[CONTENT]
        repeat = line_id in seen_ids or (identity is not None and identity in seen_identity)
        if not repeat and content is not None:
            first = content_statement.setdefault(content, line[STATEMENT_ID])
            repeat = first != line[STATEMENT_ID]
        if repeat:
            named = BankLine._make(line)
            duplicates.append(_result(DUPLICATE, RULE_IDENTITY, [named], [], named.reference, side="bank"))
            repeats.add(k)
            continue
        seen_ids.add(line_id)
        if identity is not None:
            seen_identity.add(identity)
    if not repeats:
        return lines, []
    return [line for k, line in enumerate(lines) if k not in repeats], duplicates


def _repeated(lines: list[BankLine], position: int) -> set[object]:
    """The values at `position` that occur more than once (None is no value). C-level passes only, unless there are
    repeats."""
    values = set(map(itemgetter(position), lines))
    present = len(lines)
    if None in values:
        values.discard(None)
        present -= countOf(map(itemgetter(position), lines), None)
    if len(values) == present:
        return set()
    counts = Counter(map(itemgetter(position), lines))
    return {value for value, count in counts.items() if count > 1 and value is not None}


# ---- rule 2: reference


def match_reference_group(
    reference: str, bank: Sequence[BankLine], ledger: Sequence[LedgerItem]
) -> tuple[list[MatchResult], list[BankLine], list[LedgerItem]]:
    """Results for one provider reference, and the lines and items left for the amount/date rules. The members of a
    result are in date order (then id), whatever the order they came in."""
    if len(bank) == 1 and len(ledger) == 1:  # the common case, kept cheap
        b, item = bank[0], ledger[0]
        if b.currency == item.currency:
            outcome = MATCHED if b.amount_minor == item.amount_minor else AMOUNT_MISMATCH
            return [_one_to_one(outcome, RULE_REFERENCE, b, item, reference)], [], []
        return [_one_to_one(CURRENCY_MISMATCH, RULE_REFERENCE, b, item, reference)], [], []
    bank = sorted(bank, key=_bank_order)
    ledger = sorted(ledger, key=_ledger_order)
    results: list[MatchResult] = []
    bank_only: list[BankLine] = []
    ledger_only: list[LedgerItem] = []
    matched_amounts: dict[tuple[str, int], int] = {}
    for currency in sorted({b.currency for b in bank} | {item.currency for item in ledger}):
        lines = [b for b in bank if b.currency == currency]
        items = [item for item in ledger if item.currency == currency]
        pairs, lines, items = _pair_equal(lines, items, tolerance_days=None)
        for b, item in pairs:
            results.append(_one_to_one(MATCHED, RULE_REFERENCE, b, item, reference))
            matched_amounts[(currency, b.amount_minor)] = 1
        if lines and items:
            total_bank = sum(b.amount_minor for b in lines)
            outcome = MATCHED if total_bank == sum(item.amount_minor for item in items) else AMOUNT_MISMATCH
            results.append(fix_shape(_result(outcome, RULE_REFERENCE, lines, items, reference)))
            for b in lines:
                matched_amounts[(currency, b.amount_minor)] = 1
            for item in items:
                matched_amounts[(currency, item.amount_minor)] = 1
        else:
            bank_only.extend(lines)
            ledger_only.extend(items)
    if bank_only and ledger_only:  # the reference is on both sides, in different currencies
        results.append(fix_shape(_result(CURRENCY_MISMATCH, RULE_REFERENCE, bank_only, ledger_only, reference)))
        return results, [], []
    left_bank: list[BankLine] = []
    left_ledger: list[LedgerItem] = []
    for b in bank_only:
        if (b.currency, b.amount_minor) in matched_amounts:
            results.append(_result(DUPLICATE, RULE_REFERENCE, [b], [], reference, side="bank"))
        else:
            left_bank.append(b)
    for item in ledger_only:
        if (item.currency, item.amount_minor) in matched_amounts:
            results.append(_result(DUPLICATE, RULE_REFERENCE, [], [item], reference, side="ledger"))
        else:
            left_ledger.append(item)
    return results, left_bank, left_ledger


def _pair_equal(
    lines: list[BankLine], items: list[LedgerItem], *, tolerance_days: int | None
) -> tuple[list[tuple[BankLine, LedgerItem]], list[BankLine], list[LedgerItem]]:
    """1:1 pairs of equal signed amount, dates in order (within the tolerance unless None); the rest of each side
    (lines and items in their input order). Items are tracked by position, not identity: a caller may pass the very
    same tuple twice."""
    by_amount: dict[int, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_amount[item.amount_minor].append(index)
    pairs: list[tuple[BankLine, LedgerItem]] = []
    paired_lines: set[int] = set()
    used: set[int] = set()
    lines_by_amount: dict[int, list[int]] = defaultdict(list)
    for index, b in enumerate(lines):
        lines_by_amount[b.amount_minor].append(index)
    for amount, group in lines_by_amount.items():
        candidates = by_amount.get(amount)
        if not candidates:
            continue
        ordered_lines = sorted(group, key=lambda k: _bank_order(lines[k]))
        ordered_items = sorted(candidates, key=lambda k: _ledger_order(items[k]))
        if tolerance_days is None:  # reference matches: dates only order the pairing
            count = min(len(ordered_lines), len(ordered_items))
            chosen = list(zip(ordered_lines[:count], ordered_items[:count], strict=True))
        else:
            chosen = _two_pointer_indexes(
                [lines[k].day for k in ordered_lines], [items[k].day for k in ordered_items], tolerance_days
            )
            chosen = [(ordered_lines[i], ordered_items[j]) for i, j in chosen]
        for line_index, item_index in chosen:
            pairs.append((lines[line_index], items[item_index]))
            paired_lines.add(line_index)
            used.add(item_index)
    left_lines = [b for index, b in enumerate(lines) if index not in paired_lines]
    left_items = [item for index, item in enumerate(items) if index not in used]
    return pairs, left_lines, left_items


def _bank_order(line: BankLine) -> tuple[int, str]:
    return line.day, line.line_id


def _ledger_order(item: LedgerItem) -> tuple[int, str]:
    return item.day, item.txn_id


def _two_pointer_indexes(
    line_days: Sequence[int], item_days: Sequence[int], tolerance_days: int
) -> list[tuple[int, int]]:
    """Greedy pairing of two day-sorted sides: (i, j) positions of the pairs at most `tolerance_days` apart, earliest
    first. For a symmetric window this gives the largest number of pairs."""
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < len(line_days) and j < len(item_days):
        gap = line_days[i] - item_days[j]
        if -tolerance_days <= gap <= tolerance_days:
            pairs.append((i, j))
            i += 1
            j += 1
        elif gap < 0:
            i += 1
        else:
            j += 1
    return pairs


def _two_pointer(
    lines: Sequence[BankLine], items: Sequence[LedgerItem], tolerance_days: int
) -> tuple[list[tuple[BankLine, LedgerItem]], list[BankLine], list[LedgerItem]]:
    """`_two_pointer_indexes` on lines and items: the pairs, then the unpaired of each side in date order."""
    ordered_lines = sorted(lines, key=_bank_order)
    ordered_items = sorted(items, key=_ledger_order)
    chosen = _two_pointer_indexes([b.day for b in ordered_lines], [item.day for item in ordered_items], tolerance_days)
    paired_lines = {i for i, _ in chosen}
    paired_items = {j for _, j in chosen}
    pairs = [(ordered_lines[i], ordered_items[j]) for i, j in chosen]
    left_lines = [b for i, b in enumerate(ordered_lines) if i not in paired_lines]
    left_items = [item for j, item in enumerate(ordered_items) if j not in paired_items]
    return pairs, left_lines, left_items


# ---- rule 3: amount, currency and date


def match_amount_group(
    lines: Sequence[BankLine], items: Sequence[LedgerItem], tolerance_days: int
) -> tuple[list[MatchResult], list[BankLine], list[LedgerItem]]:
    """1:1 matches of lines and items of ONE currency and signed amount within the tolerance; the rest."""
    if len(lines) == 1 and len(items) == 1:  # the common case, kept cheap
        b, item = lines[0], items[0]
        if abs(b.day - item.day) <= tolerance_days:
            return [_one_to_one(MATCHED, RULE_AMOUNT_DATE, b, item, b.reference or item.reference)], [], []
        return [], list(lines), list(items)
    pairs, left_lines, left_items = _two_pointer(lines, items, tolerance_days)
    results = [_one_to_one(MATCHED, RULE_AMOUNT_DATE, b, item, b.reference or item.reference) for b, item in pairs]
    return results, left_lines, left_items


# ---- rule 4: sums within the window


def match_sums(
    lines: Sequence[BankLine], items: Sequence[LedgerItem], tolerance_days: int
) -> tuple[list[MatchResult], list[BankLine], list[LedgerItem]]:
    """Lines and items of ONE currency: a line equal to the sum of 2+ items of its sign inside its window (1:n), then
    an item equal to the sum of 2+ lines inside its window (n:1), in the shapes `_subset` allows; bounded by SUM_SCAN
    candidates per line (found by bisection on the dates). Zero amounts never take part. A sum it does not find stays
    an exception for an operator."""
    results: list[MatchResult] = []
    left_lines: list[BankLine] = [b for b in lines if b.amount_minor == 0]
    left_items: list[LedgerItem] = [item for item in items if item.amount_minor == 0]
    for positive in (True, False):
        side_lines = [b for b in lines if b.amount_minor != 0 and (b.amount_minor > 0) == positive]
        side_items = [item for item in items if item.amount_minor != 0 and (item.amount_minor > 0) == positive]
        if side_lines and side_items:
            found, side_lines, side_items = _match_sums_one_sign(side_lines, side_items, tolerance_days)
            results.extend(found)
        left_lines.extend(side_lines)
        left_items.extend(side_items)
    return results, sorted(left_lines, key=_bank_order), sorted(left_items, key=_ledger_order)


C = TypeVar("C", BankLine, LedgerItem)


class _Candidates(Generic[C]):
    """One side of `match_sums` (one sign), sorted by date: prefix sums of the magnitudes and the positions already
    taken, so the sum of the free candidates of a window costs two bisections, not a scan of the window."""

    def __init__(self, records: Sequence[C]) -> None:
        self.records: Sequence[C] = records
        self.days = [record.day for record in records]
        self.magnitudes = [abs(record.amount_minor) for record in records]
        self.prefix = [0]
        for magnitude in self.magnitudes:
            self.prefix.append(self.prefix[-1] + magnitude)
        self.taken = [False] * len(records)
        self.taken_positions: list[int] = []  # sorted

    def take(self, positions: Iterable[int]) -> None:
        for k in positions:
            self.taken[k] = True
            insort(self.taken_positions, k)

    def free_count_and_sum(self, low: int, high: int) -> tuple[int, int]:
        first, last = bisect_left(self.taken_positions, low), bisect_left(self.taken_positions, high)
        taken_sum = sum(self.magnitudes[k] for k in self.taken_positions[first:last])
        return (high - low) - (last - first), self.prefix[high] - self.prefix[low] - taken_sum

    def free(self, low: int, high: int) -> list[int]:
        return [k for k in range(low, high) if not self.taken[k]]


def _match_sums_one_sign(
    lines: Sequence[BankLine], items: Sequence[LedgerItem], tolerance_days: int
) -> tuple[list[MatchResult], list[BankLine], list[LedgerItem]]:
    line_side = _Candidates(sorted(lines, key=_bank_order))
    item_side = _Candidates(sorted(items, key=_ledger_order))
    results: list[MatchResult] = []
    for index, b in enumerate(line_side.records):
        found = _subset(abs(b.amount_minor), b.day, item_side, tolerance_days)
        if found is not None:
            line_side.take([index])
            item_side.take(found)
            named = [item_side.records[k] for k in found]
            results.append(fix_shape(_result(MATCHED, RULE_SUM_WINDOW, [b], named, b.reference)))
    for index, item in enumerate(item_side.records):
        if item_side.taken[index]:
            continue
        found = _subset(abs(item.amount_minor), item.day, line_side, tolerance_days)
        if found is not None:
            item_side.take([index])
            line_side.take(found)
            named_lines = [line_side.records[k] for k in found]
            results.append(fix_shape(_result(MATCHED, RULE_SUM_WINDOW, named_lines, [item], item.reference)))
    left_lines = [b for k, b in enumerate(line_side.records) if not line_side.taken[k]]
    left_items = [item for k, item in enumerate(item_side.records) if not item_side.taken[k]]
    return results, left_lines, left_items


def _subset(goal: int, day: int, side: _Candidates[C], tolerance_days: int) -> list[int] | None:
    """Positions (into `side`, sorted by day) of 2+ free candidates whose magnitudes sum exactly to `goal`: all of
    the window, else all of the same day, else (for a pool of at most SUM_SMALL_POOL) any subset, nearest first. A
    window of more than SUM_SCAN candidates is narrowed to the same day, and a day of more is not searched.

    Deliberately not a general subset-sum: among thousands of unexplained lines an arbitrary subset that happens to add
    up is a coincidence, and a false match hides two exceptions. A batch without a reference settles everything of its
    day or window, which is what the first two shapes find."""
    days = side.days
    low, high = bisect_left(days, day - tolerance_days), bisect_right(days, day + tolerance_days)
    day_low, day_high = bisect_left(days, day, low, high), bisect_right(days, day, low, high)
    if high - low > SUM_SCAN:  # too wide to check cheaply: the same day only
        low, high = day_low, day_high
        if high - low > SUM_SCAN:
            return None
    free, total = side.free_count_and_sum(low, high)
    if free < 2:
        return None
    if total == goal:
        return side.free(low, high)
    day_free, day_total = side.free_count_and_sum(day_low, day_high)
    if 2 <= day_free < free and day_total == goal:
        return side.free(day_low, day_high)
    if free > SUM_SMALL_POOL:
        return None
    pool = sorted(side.free(low, high), key=lambda k: (abs(days[k] - day), k))
    for size in range(len(pool) - 1, 1, -1):
        for chosen in combinations(pool, size):
            if sum(side.magnitudes[k] for k in chosen) == goal:
                return sorted(chosen)
    return None


# ---- rule 5 and helpers


def unmatched(lines: Iterable[BankLine], items: Iterable[LedgerItem]) -> Iterator[MatchResult]:
    for b in lines:
        yield _result(MISSING_IN_LEDGER, RULE_NONE, [b], [], b.reference)
    for item in items:
        yield _result(MISSING_AT_BANK, RULE_NONE, [], [item], item.reference)


# ---- balance check


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """The bank's closing balance against what the ledger says it should be: the client balances (the money the kernel
    owes its users, held at this bank) plus the in-flight items (movements the ledger has and the bank has not booked
    yet, as their effect still to come at the bank, i.e. minus their signed ledger amount)."""

    currency: str
    bank_closing_minor: int
    client_balances_minor: int
    in_flight_minor: int
    expected_minor: int
    difference_minor: int  # bank - expected; 0 = balanced

    @property
    def balanced(self) -> bool:
        return self.difference_minor == 0

    def to_dict(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "bank_closing_minor": self.bank_closing_minor,
            "client_balances_minor": self.client_balances_minor,
            "in_flight_minor": self.in_flight_minor,
            "expected_minor": self.expected_minor,
            "difference_minor": self.difference_minor,
            "balanced": self.balanced,
        }


def check_balance(
    *, currency: str, bank_closing_minor: int, client_balances_minor: int, in_flight_minor: int = 0
) -> BalanceCheck:
    for name, value in (
        ("bank_closing_minor", bank_closing_minor),
        ("client_balances_minor", client_balances_minor),
        ("in_flight_minor", in_flight_minor),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be int minor units, got {type(value).__name__}")
    expected = client_balances_minor + in_flight_minor
    return BalanceCheck(
        currency=currency,
        bank_closing_minor=bank_closing_minor,
        client_balances_minor=client_balances_minor,
        in_flight_minor=in_flight_minor,
        expected_minor=expected,
        difference_minor=bank_closing_minor - expected,
    )


def in_flight_minor(results: Iterable[MatchResult], *, currency: str, since_day: int | None = None) -> int:
    """The bank-side effect still to come of the ledger items the bank has not booked (`missing_at_bank`) in
    `currency`, optionally only those dated `since_day` or later (older ones are exceptions, not in flight)."""
    total = 0
    for result in results:
        if result.outcome != MISSING_AT_BANK or result.ledger_currency != currency:
            continue
        if since_day is not None and result.day < since_day:
            continue
        total -= result.ledger_minor
    return total
