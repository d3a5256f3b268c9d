"""Streaming reconciliation of bank lines against ledger items with bounded memory (docs/reconciliation.md).

The rules live in `moncore.domain.reconciliation`; this module feeds them partitions small enough for memory, so a
day of 1,000,000 statement lines against 1,000,000 ledger legs runs on a 2-core machine in a few hundred MiB.

Passes (each a hash partitioning, "external bucketing" instead of an external sort: only equality keys are needed):
0. Both inputs are read once, as iterators. Lines and items with a reference go to spool A by hash(reference), the
   others to spool B by hash(currency, amount).
A. Each A partition is loaded alone: bank duplicates are split off, lines and items are grouped by reference and
   matched (rule 2). What is left goes to spool B by hash(currency, amount).
B. Each B partition: duplicates again (lines that had no reference), then per (currency, amount) the 1:1 amount and
   date rule. What is left goes to spool C by hash(currency, sign).
C. Each C partition, per (currency, sign): the bounded sum search (1:n, n:1); the rest is missing_in_ledger /
   missing_at_bank. A (currency, sign) with more than `sum_rule_max_records` leftovers skips the sum search and is
   streamed out as missing (a day that broken needs an operator, not a subset search).

A spool keeps at most `memory_records` records resident and evicts whole partitions to disk from the highest number
down ("hybrid hash": the low partitions, read first by the next pass, never pay for pickling); an evicted partition is
an append-only temporary file of pickled chunks of about `chunk_records` records (pickle of our own tuples of
str/int/None, written and read back by this process only, in a private temporary directory removed at the end). Peak
memory is therefore about the spools' budgets plus the largest partition (a reference or (currency, amount) group
cannot be split); the hashes are CRC-32, so partitions, and hence the order of the results, are the same on every run.
Every group a rule needs lands whole in one partition, so the results do not depend on `partitions`,
`memory_records` or `chunk_records` (tests/unit/test_matching.py proves them equal to the rules on whole lists).
"""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import tempfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Generic, TypeVar

from moncore.domain.reconciliation import (
    AMOUNT,
    CURRENCY,
    DEFAULT_TOLERANCE_DAYS,
    REFERENCE,
    BankLine,
    LedgerItem,
    MatchResult,
    match_amount_group,
    match_reference_group,
    match_sums,
    one_to_one_by_reference,
    split_duplicates,
    unmatched,
)

DEFAULT_PARTITIONS = 32
DEFAULT_MEMORY_RECORDS = 400_000
DEFAULT_CHUNK_RECORDS = 1024
DEFAULT_SUM_RULE_MAX_RECORDS = 100_000

R = TypeVar("R", BankLine, LedgerItem)


class _OneToOneBatch(list[MatchResult]):
    """Results that each name one line and one item (counted in bulk by `Reconciler.run`)."""


K = TypeVar("K", bound=tuple[Any, ...])


def _by_key(records: list[K]) -> tuple[dict[Any, K], dict[Any, list[K]]]:
    """Records by their reference: {reference: record} for references seen once and {reference: [records]} for
    those seen more than once. The common case (every reference once) is two C-level passes, no Python loop."""
    keys = list(map(itemgetter(REFERENCE), records))
    single: dict[Any, K] = dict(zip(keys, records, strict=True))
    if len(single) == len(records):
        return single, {}
    # `single` kept the last record of each key: a key whose record is not that one occurs more than once.
    repeated = {key for key, record in zip(keys, records, strict=True) if single[key] is not record}
    several: dict[Any, list[K]] = {}
    for key, record in zip(keys, records, strict=True):
        if key in repeated:
            several.setdefault(key, []).append(record)
    for key in repeated:
        del single[key]
    return single, several


def _bucket(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % partitions


class _AmountBuckets:
    """Partition of a record by (currency, signed amount); CRC-32 of the currency, so it is the same on every run."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._salts: dict[str, int] = {}

    def __call__(self, record: BankLine | LedgerItem) -> int:
        currency = record[CURRENCY]
        salt = self._salts.get(currency)
        if salt is None:
            salt = self._salts[currency] = zlib.crc32(currency.encode("utf-8"))
        return (record[AMOUNT] * 1_000_003 + salt) % self._partitions


class _Spool(Generic[R]):
    """Records in `partitions` buckets, at most `memory_records` of them resident: when there are more, buckets are
    evicted to disk from the highest number down (a "hybrid hash" spool: the low buckets, read first by the next
    pass, stay in memory and never pay for pickling), and an evicted bucket is from then on an append-only file of
    pickled chunks of about `chunk_records` records. The bucket lists are never replaced, so a hot loop may hold their
    bound `append` methods (`appenders`) and call `maintain()` every `maintain_every` records (MAINTAIN_EVERY, or
    a chunk if smaller) instead of paying a method call per record."""

    MAINTAIN_EVERY = 1024

    def __init__(
        self,
        name: str,
        kind: type[R],
        partitions: int,
        directory: Path,
        memory_records: int,
        chunk_records: int,
    ) -> None:
        self._name = name
        self._make: Callable[[Iterable[Any]], R] = kind._make
        self._directory = directory
        self._memory_records = memory_records
        self._chunk_records = chunk_records
        self._buffers: list[list[R]] = [[] for _ in range(partitions)]
        self._evicted = [False] * partitions
        self._since_maintained = 0
        self.maintain_every = min(self.MAINTAIN_EVERY, chunk_records)
        self.spilled_bytes = 0

    def appenders(self) -> list[Callable[[R], None]]:
        return [buffer.append for buffer in self._buffers]

    def add(self, partition: int, record: R) -> None:
        self._buffers[partition].append(record)
        self._since_maintained += 1
        if self._since_maintained >= self.maintain_every:
            self.maintain()

    def maintain(self) -> None:
        """Write out the full chunks of evicted buckets; evict buckets while the resident ones hold too many."""
        self._since_maintained = 0
        resident = 0
        for partition, buffer in enumerate(self._buffers):
            if not self._evicted[partition]:
                resident += len(buffer)
            elif len(buffer) >= self._chunk_records:
                self._flush(partition)
        partition = len(self._buffers) - 1
        while resident > self._memory_records and partition >= 0:
            if not self._evicted[partition]:
                resident -= len(self._buffers[partition])
                self._evicted[partition] = True
                self._flush(partition)
            partition -= 1

    def _path(self, partition: int) -> Path:
        return self._directory / f"{self._name}-{partition:04d}.pkl"

    def _flush(self, partition: int) -> None:
        buffer = self._buffers[partition]
        if not buffer:
            return
        with self._path(partition).open("ab") as handle:  # plain tuples pickle 3-4x faster than named ones
            start = handle.tell()
            pickle.dump(buffer if type(buffer[0]) is tuple else list(map(tuple, buffer)), handle, protocol=5)
            self.spilled_bytes += handle.tell() - start
        buffer.clear()

    def take(self, partition: int) -> list[R]:
        """All records of one partition as named tuples (then forgotten)."""
        make = self._make
        return [record if type(record) is not tuple else make(record) for record in self.take_raw(partition)]

    def take_raw(self, partition: int) -> list[R]:
        """All records of one partition in the order added, those read back from disk as plain tuples with the same
        positions (cheaper by a constructor call each: the hot path reads them by position)."""
        chunks = list(self._raw_chunks(partition))
        return chunks[0] if len(chunks) == 1 else [record for chunk in chunks for record in chunk]

    def chunks(self, partition: int) -> Iterator[list[R]]:
        """The records of one partition as named tuples, a chunk at a time, in the order added (then forgotten)."""
        make = self._make
        for chunk in self._raw_chunks(partition):
            yield [record if type(record) is not tuple else make(record) for record in chunk]

    def _raw_chunks(self, partition: int) -> Iterator[list[R]]:
        buffer = self._buffers[partition]
        records = buffer[:]
        buffer.clear()
        path = self._path(partition)
        if self._evicted[partition] and path.exists():
            with path.open("rb") as handle:
                while True:
                    try:
                        chunk = pickle.load(handle)  # noqa: S301 - our own spill file, written by this process
                    except EOFError:
                        break
                    yield chunk
            path.unlink()
        yield records

    @property
    def spilled(self) -> bool:
        return any(self._evicted)


@dataclass
class Summary:
    """Counts of a run: lines and items read, results per outcome, and lines / items named per outcome."""

    bank_lines: int = 0
    ledger_items: int = 0
    results: Counter[str] = field(default_factory=Counter)
    lines_by_outcome: Counter[str] = field(default_factory=Counter)
    items_by_outcome: Counter[str] = field(default_factory=Counter)
    spilled: bool = False
    spilled_bytes: int = 0  # written to the spill files in all (each record may be written once per pass)

    def add(self, result: MatchResult) -> None:
        self.results[result.outcome] += 1
        self.lines_by_outcome[result.outcome] += len(result.bank_line_ids)
        self.items_by_outcome[result.outcome] += len(result.txn_ids)

    def to_dict(self) -> dict[str, object]:
        return {
            "bank_lines": self.bank_lines,
            "ledger_items": self.ledger_items,
            "results": dict(sorted(self.results.items())),
            "lines_by_outcome": dict(sorted(self.lines_by_outcome.items())),
            "items_by_outcome": dict(sorted(self.items_by_outcome.items())),
            "spilled": self.spilled,
            "spilled_bytes": self.spilled_bytes,
        }


@dataclass
class Reconciler:
    """One reconciliation run. `run()` is a generator of results; `summary` is complete once it is exhausted."""

    tolerance_days: int = DEFAULT_TOLERANCE_DAYS
    partitions: int = DEFAULT_PARTITIONS
    memory_records: int = DEFAULT_MEMORY_RECORDS
    chunk_records: int = DEFAULT_CHUNK_RECORDS
    sum_rule_max_records: int = DEFAULT_SUM_RULE_MAX_RECORDS
    workdir: str | None = None  # where the private temporary directory goes (default: the system's)
    pause_gc: bool = True
    summary: Summary = field(default_factory=Summary)

    def __post_init__(self) -> None:
        if self.tolerance_days < 0 or self.partitions < 1 or self.chunk_records < 1 or self.memory_records < 0:
            raise ValueError("tolerance_days >= 0, partitions >= 1, chunk_records >= 1, memory_records >= 0")

    def run(self, bank_lines: Iterable[BankLine], ledger_items: Iterable[LedgerItem]) -> Iterator[MatchResult]:
        """Results, streamed. With `pause_gc` the cyclic garbage collector is off until the generator finishes or is
        closed (then restored as it was): the run allocates millions of acyclic tuples, which reference counting
        frees, and generation-0 collections over them cost a good part of the run (bench/reconciliation.py). Cyclic
        garbage the consumer makes meanwhile is collected when the run ends."""
        directory = Path(tempfile.mkdtemp(prefix="moncore-recon-", dir=self.workdir))
        collector_was_on = gc.isenabled()
        if self.pause_gc:
            gc.disable()
        summary = self.summary
        results, lines_by_outcome, items_by_outcome = (
            summary.results,
            summary.lines_by_outcome,
            summary.items_by_outcome,
        )
        try:
            os.chmod(directory, 0o700)
            for batch in self._passes(bank_lines, ledger_items, directory):
                if type(batch) is _OneToOneBatch:  # counted in bulk: one line and one item each
                    counts = Counter(map(itemgetter(0), batch))
                    results.update(counts)
                    lines_by_outcome.update(counts)
                    items_by_outcome.update(counts)
                else:
                    for result in batch:
                        outcome = result[0]
                        results[outcome] += 1
                        lines_by_outcome[outcome] += len(result[3])
                        items_by_outcome[outcome] += len(result[4])
                yield from batch
        finally:
            if collector_was_on:
                gc.enable()
            shutil.rmtree(directory, ignore_errors=True)

    def _spool(self, name: str, directory: Path) -> _Spool[BankLine]:
        return _Spool(name, BankLine, self.partitions, directory, self.memory_records, self.chunk_records)

    def _ledger_spool(self, name: str, directory: Path) -> _Spool[LedgerItem]:
        return _Spool(name, LedgerItem, self.partitions, directory, self.memory_records, self.chunk_records)

    def _passes(
        self, bank_lines: Iterable[BankLine], ledger_items: Iterable[LedgerItem], directory: Path
    ) -> Iterator[list[MatchResult]]:
        """The results in batches (a list per rule application), so the hot path pays no generator step per result."""
        a_bank, a_ledger = self._spool("a-bank", directory), self._ledger_spool("a-ledger", directory)
        b_bank, b_ledger = self._spool("b-bank", directory), self._ledger_spool("b-ledger", directory)
        c_bank, c_ledger = self._spool("c-bank", directory), self._ledger_spool("c-ledger", directory)
        amount_bucket = _AmountBuckets(self.partitions)
        self.summary.bank_lines = self._partition(bank_lines, a_bank, b_bank, amount_bucket)
        self.summary.ledger_items = self._partition(ledger_items, a_ledger, b_ledger, amount_bucket)
        yield from self._by_reference(a_bank, a_ledger, b_bank, b_ledger, amount_bucket)
        sizes: Counter[tuple[str, int]] = Counter()
        yield from self._by_amount(b_bank, b_ledger, c_bank, c_ledger, sizes)
        yield from self._by_sum(c_bank, c_ledger, sizes)
        spools = (a_bank, a_ledger, b_bank, b_ledger, c_bank, c_ledger)
        self.summary.spilled = any(spool.spilled for spool in spools)
        self.summary.spilled_bytes = sum(spool.spilled_bytes for spool in spools)

    def _partition(
        self,
        records: Iterable[Any],
        by_reference: _Spool[Any],
        by_amount: _Spool[Any],
        amount_bucket: _AmountBuckets,
    ) -> int:
        """Pass 0 for one input: a record with a reference to `by_reference` by CRC-32 of the reference, the others
        to `by_amount`. The hot loop of the run (every record passes here once): bound appends, no call per record
        but the hash."""
        to_reference, to_amount = by_reference.appenders(), by_amount.appenders()
        modulo = self.partitions.__rmod__  # crc % partitions, called from C by map()
        reference_of = itemgetter(REFERENCE)
        count = 0
        source = iter(records)
        while chunk := list(islice(source, by_reference.maintain_every)):
            referenced = [record for record in chunk if record[REFERENCE] is not None]
            if len(referenced) != len(chunk):
                for record in chunk:
                    if record[REFERENCE] is None:
                        to_amount[amount_bucket(record)](record)
            buckets = map(modulo, map(zlib.crc32, map(str.encode, map(reference_of, referenced))))
            for record, bucket in zip(referenced, buckets, strict=True):
                to_reference[bucket](record)
            count += len(chunk)
            by_reference.maintain()
            by_amount.maintain()
        return count

    def _by_reference(
        self,
        a_bank: _Spool[BankLine],
        a_ledger: _Spool[LedgerItem],
        b_bank: _Spool[BankLine],
        b_ledger: _Spool[LedgerItem],
        amount_bucket: _AmountBuckets,
    ) -> Iterator[list[MatchResult]]:
        """Pass A: duplicates, then rule 2 per reference; the rest to spool B. A reference with one line and one item
        (nearly all of them) is matched on the plain tuples, a partition's worth in one batch; one with several on a
        side goes through `match_reference_group` in the order of the references, so the results do not depend on the
        input order."""
        make_line, make_item = BankLine._make, LedgerItem._make
        for partition in range(self.partitions):
            kept, duplicates = split_duplicates(a_bank.take_raw(partition))
            yield duplicates
            line_of, lines_of = _by_key(kept)
            item_of, items_of = _by_key(a_ledger.take_raw(partition))
            for reference in sorted(lines_of.keys() | items_of.keys()):
                lines = lines_of.get(reference) or ([line_of[reference]] if reference in line_of else [])
                items = items_of.get(reference) or ([item_of[reference]] if reference in item_of else [])
                line_of.pop(reference, None)
                item_of.pop(reference, None)
                if not items or not lines:
                    for line in lines:
                        b_bank.add(amount_bucket(line), line)
                    for item in items:
                        b_ledger.add(amount_bucket(item), item)
                    continue
                results, left_lines, left_items = match_reference_group(
                    reference, [make_line(line) for line in lines], [make_item(item) for item in items]
                )
                yield results
                for line in left_lines:
                    b_bank.add(amount_bucket(line), line)
                for item in left_items:
                    b_ledger.add(amount_bucket(item), item)
            take_item = item_of.pop
            paired_lines: list[BankLine] = []
            partners: list[LedgerItem] = []
            for reference, line in line_of.items():
                partner: LedgerItem | None = take_item(reference, None)
                if partner is None:
                    b_bank.add(amount_bucket(line), line)
                else:
                    paired_lines.append(line)
                    partners.append(partner)
            yield _OneToOneBatch(map(one_to_one_by_reference, paired_lines, partners))
            for item in item_of.values():
                b_ledger.add(amount_bucket(item), item)

    def _by_amount(
        self,
        b_bank: _Spool[BankLine],
        b_ledger: _Spool[LedgerItem],
        c_bank: _Spool[BankLine],
        c_ledger: _Spool[LedgerItem],
        sizes: Counter[tuple[str, int]],
    ) -> Iterator[list[MatchResult]]:
        """Pass B: duplicates of unreferenced lines, then rule 3 per (currency, amount); the rest to spool C."""
        for partition in range(self.partitions):
            kept, duplicates = split_duplicates(b_bank.take(partition))  # named: rule 3 reads attributes
            yield duplicates
            amounts: dict[tuple[str, int], tuple[list[BankLine], list[LedgerItem]]] = {}
            for line in kept:
                amounts.setdefault((line.currency, line.amount_minor), ([], []))[0].append(line)
            for item in b_ledger.take(partition):
                amounts.setdefault((item.currency, item.amount_minor), ([], []))[1].append(item)
            for (currency, amount), (group_lines, group_items) in amounts.items():
                lines, items = group_lines, group_items
                if lines and items:
                    results, lines, items = match_amount_group(lines, items, self.tolerance_days)
                    yield results
                sign = (amount > 0) - (amount < 0)
                bucket = _bucket(f"{currency}{sign}", self.partitions)
                sizes[(currency, sign)] += len(lines) + len(items)
                for line in lines:
                    c_bank.add(bucket, line)
                for item in items:
                    c_ledger.add(bucket, item)

    def _by_sum(
        self, c_bank: _Spool[BankLine], c_ledger: _Spool[LedgerItem], sizes: Counter[tuple[str, int]]
    ) -> Iterator[list[MatchResult]]:
        """Pass C: rule 4 per (currency, sign) within the cap, then rule 5 (missing on one side)."""
        cap = self.sum_rule_max_records
        for partition in range(self.partitions):
            residual: dict[tuple[str, int], tuple[list[BankLine], list[LedgerItem]]] = defaultdict(lambda: ([], []))
            for bank_chunk in c_bank.chunks(partition):
                for line in bank_chunk:
                    key = (line.currency, (line.amount_minor > 0) - (line.amount_minor < 0))
                    if sizes[key] > cap or key[1] == 0:
                        yield list(unmatched([line], []))  # streamed: too many for the sum search, or zero
                    else:
                        residual[key][0].append(line)
            for ledger_chunk in c_ledger.chunks(partition):
                for item in ledger_chunk:
                    key = (item.currency, (item.amount_minor > 0) - (item.amount_minor < 0))
                    if sizes[key] > cap or key[1] == 0:
                        yield list(unmatched([], [item]))
                    else:
                        residual[key][1].append(item)
            for key in sorted(residual):
                lines, items = residual.pop(key)
                if lines and items:
                    results, lines, items = match_sums(lines, items, self.tolerance_days)
                    yield results
                yield list(unmatched(lines, items))


def reconcile(
    bank_lines: Iterable[BankLine],
    ledger_items: Iterable[LedgerItem],
    *,
    tolerance_days: int = DEFAULT_TOLERANCE_DAYS,
    **options: int,
) -> tuple[list[MatchResult], Summary]:
    """All results of a (small) run at once, for tests and one-off checks; large runs iterate `Reconciler.run()`."""
    reconciler = Reconciler(tolerance_days=tolerance_days, **options)  # type: ignore[arg-type]
    results = list(reconciler.run(bank_lines, ledger_items))
    return results, reconciler.summary
