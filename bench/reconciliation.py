"""Reconciliation bench: the streaming matcher (moncore.reconciliation.matching) on 1,000,000 statement lines against
1,000,000 ledger legs, reporting lines/s and peak memory (docs/reconciliation.md, issue 6 "Scale").

The input is generated deterministically (seeded) as a mix of cases, each built to end in one known result: matched
by reference 1:1, matched by amount and date (no reference, or a bank reference the ledger does not know), 1:n and
n:1 by reference, amount_mismatch, currency_mismatch, a bank line repeated in an overlapping statement, a ledger item
posted twice under one reference, missing_in_ledger and missing_at_bank. Amounts are unique per case, so no case can
match another's lines by accident and the expected counts per result are exact; the bench checks the matcher's counts
against them (`as_generated`). Both sides are cut to exactly N records: a case that would overrun a side is replaced
by a one-sided (missing) case for the side still short.

The generated records are written to two files of pickled chunks first; the measurement then runs in a fresh child
process (spawn) that reads them back as iterators, as a run reads its inputs, and drains `Reconciler.run()`. Its peak
RSS (getrusage ru_maxrss) is therefore the matcher's alone plus the interpreter, not the generator's or another
bench's; its baseline RSS after imports is reported beside it. Wall time covers reading the inputs, the three
partitioned passes and the spill files (in the system's temporary directory).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import pickle
import random
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from bench import report

NAME = "reconciliation"
SEED = 20261122
DEFAULT_RECORDS = 1_000_000
TARGET_LINES_PER_S = 50_000
TARGET_PEAK_RSS_MIB = 512
CHUNK = 4096
SPEED_CHECK_STEPS = 5_000_000
START_DAY = date(2026, 11, 20).toordinal()
DAYS = 3  # the lines of one statement day spread over 3 days of value dates, inside the 2-day tolerance of the run

# Case kinds and their share of the cases (sums to 1).
MIX: tuple[tuple[str, float], ...] = (
    ("reference_1_1", 0.80),
    ("amount_date", 0.03),
    ("amount_date_foreign_reference", 0.03),
    ("reference_1_n", 0.01),
    ("reference_n_1", 0.01),
    ("amount_mismatch", 0.02),
    ("currency_mismatch", 0.005),
    ("bank_duplicate", 0.005),
    ("ledger_duplicate", 0.005),
    ("missing_in_ledger", 0.0425),
    ("missing_at_bank", 0.0425),
)

log = logging.getLogger("bench.reconciliation")
_STATEMENT_IDS: dict[int, str] = {}

Line = tuple[str, str | None, int, str, int, str, int | None, int | None]  # a BankLine's fields
Item = tuple[str, str | None, int, str, int]  # a LedgerItem's fields


@dataclass
class Expected:
    """What the generated cases must produce: results, bank lines and ledger items per outcome."""

    results: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    cases: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str, results: int, lines: int, items: int) -> None:
        self.results[outcome] += results
        self.lines[outcome] += lines
        self.items[outcome] += items


def _case(kind: str, n: int, rng: random.Random) -> tuple[list[Line], list[Item], list[tuple[str, int, int, int]]]:
    """The bank lines, ledger items and expected (outcome, results, lines, items) of case number `n`."""
    # Unique per case, 70% credits; x01 so that no sum of 2..100 other cases' amounts can equal one (sum rule).
    sign = 1 if rng.random() < 0.7 else -1
    amount = ((n + 1) * 100 + 1) * sign
    third = abs(amount) // 3 * sign
    parts = [third, third, amount - 2 * third]  # the members of a 1:n / n:1 case
    day = START_DAY + rng.randrange(DAYS)
    ledger_day = day - rng.randrange(2)
    ref = f"E2E{n:010d}"
    statement = _STATEMENT_IDS.setdefault(day, f"STMT-{day}")  # one string per statement, as the parser gives

    def line(k: int, reference: str | None, minor: int, currency: str = "EUR", stmt: str = statement) -> Line:
        return (f"{stmt}#{n}.{k}", reference, minor, currency, day, stmt, None, hash((n, k, minor)) & (2**63 - 1))

    def item(k: int, reference: str | None, minor: int, currency: str = "EUR") -> Item:
        return (f"txn-{n:010d}-{k}", reference, minor, currency, ledger_day)

    if kind == "reference_1_1":
        return [line(0, ref, amount)], [item(0, ref, amount)], [("matched", 1, 1, 1)]
    if kind == "amount_date":
        return [line(0, None, amount)], [item(0, None, amount)], [("matched", 1, 1, 1)]
    if kind == "amount_date_foreign_reference":  # the bank's reference is not the provider's: falls to rule 3
        return [line(0, f"BANK{n:010d}", amount)], [item(0, ref, amount)], [("matched", 1, 1, 1)]
    if kind == "reference_1_n":
        return [line(0, ref, amount)], [item(k, ref, part) for k, part in enumerate(parts)], [("matched", 1, 1, 3)]
    if kind == "reference_n_1":
        return [line(k, ref, part) for k, part in enumerate(parts)], [item(0, ref, amount)], [("matched", 1, 3, 1)]
    if kind == "amount_mismatch":
        return [line(0, ref, amount)], [item(0, ref, amount + 1)], [("amount_mismatch", 1, 1, 1)]
    if kind == "currency_mismatch":
        return [line(0, ref, amount)], [item(0, ref, amount, "USD")], [("currency_mismatch", 1, 1, 1)]
    if kind == "bank_duplicate":  # the same line again in an overlapping statement (another statement id)
        first = line(0, ref, amount)
        overlap = _STATEMENT_IDS.setdefault(-day, f"{statement}-overlap")
        again = (f"{overlap}#{n}.0", *first[1:5], overlap, None, first[7])
        return [first, again], [item(0, ref, amount)], [("matched", 1, 1, 1), ("duplicate", 1, 1, 0)]
    if kind == "ledger_duplicate":  # one payment posted twice under its reference
        return (
            [line(0, ref, amount)],
            [item(0, ref, amount), item(1, ref, amount)],
            [("matched", 1, 1, 1), ("duplicate", 1, 0, 1)],
        )
    if kind == "missing_in_ledger":
        return [line(0, ref if rng.random() < 0.5 else None, amount)], [], [("missing_in_ledger", 1, 1, 0)]
    if kind == "missing_at_bank":
        return [], [item(0, ref if rng.random() < 0.5 else None, amount)], [("missing_at_bank", 1, 0, 1)]
    raise ValueError(kind)


def generate(records: int, seed: int, directory: Path) -> tuple[Path, Path, Expected]:
    """Write exactly `records` bank lines and `records` ledger items (pickled chunks) and return what they must give."""
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [share for _, share in MIX]
    bank_path, ledger_path = directory / "bank.pkl", directory / "ledger.pkl"
    expected = Expected()
    bank: list[Line] = []
    ledger: list[Item] = []
    lines = items = n = 0
    with bank_path.open("wb") as bank_file, ledger_path.open("wb") as ledger_file:
        while lines < records or items < records:
            kind = rng.choices(kinds, weights)[0]
            case_lines, case_items, outcomes = _case(kind, n, rng)
            if lines + len(case_lines) > records or items + len(case_items) > records:
                kind = "missing_in_ledger" if lines < records else "missing_at_bank"  # one side is full: fill the other
                case_lines, case_items, outcomes = _case(kind, n, rng)
            n += 1
            expected.cases[kind] += 1
            for outcome, results, named_lines, named_items in outcomes:
                expected.add(outcome, results, named_lines, named_items)
            bank.extend(case_lines)
            ledger.extend(case_items)
            lines += len(case_lines)
            items += len(case_items)
            if len(bank) >= CHUNK:
                pickle.dump(bank, bank_file, protocol=pickle.HIGHEST_PROTOCOL)
                bank = []
            if len(ledger) >= CHUNK:
                pickle.dump(ledger, ledger_file, protocol=pickle.HIGHEST_PROTOCOL)
                ledger = []
        pickle.dump(bank, bank_file, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(ledger, ledger_file, protocol=pickle.HIGHEST_PROTOCOL)
    return bank_path, ledger_path, expected


def _read(path: Path, kind: Any) -> Iterator[Any]:
    """The records of a file as `kind` named tuples (built with the tuple constructor itself, as cheap as a reader
    can make them)."""
    make = partial(tuple.__new__, kind)
    with path.open("rb") as handle:
        while True:
            try:
                chunk = pickle.load(handle)
            except EOFError:
                return
            yield from map(make, chunk)


def _rss_kib() -> int:
    for row in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    return 0


def _speed_check_s() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this machine runs Python right now (a shared or busy machine
    is slower per CPU second too), to read the run's numbers against."""
    started = time.process_time()
    total = 0
    for value in range(SPEED_CHECK_STEPS):
        total += value
    return time.process_time() - started


def _measure(bank_path: str, ledger_path: str, options: dict[str, int], pipe: Any) -> None:
    """The child process: drain the matcher over the two files; send timings, memory and counts back."""
    from moncore.domain.reconciliation import BankLine, LedgerItem  # noqa: PLC0415 - imported in the child
    from moncore.reconciliation.matching import Reconciler  # noqa: PLC0415

    baseline_kib = _rss_kib()
    speed_check = _speed_check_s()
    reconciler = Reconciler(**options)
    started = time.perf_counter()
    cpu_started = time.process_time()
    load_before = os.getloadavg()
    for _ in reconciler.run(_read(Path(bank_path), BankLine), _read(Path(ledger_path), LedgerItem)):
        pass
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send(
        {
            "elapsed_s": elapsed,
            "cpu_s": cpu,
            "baseline_rss_mib": baseline_kib / 1024,
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "speed_check_s": speed_check,
            "load_before": [round(value, 2) for value in load_before],
            "load_after": [round(value, 2) for value in os.getloadavg()],
            "summary": reconciler.summary.to_dict(),
        }
    )
    pipe.close()


def run(records: int, seed: int, options: dict[str, int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="moncore-bench-recon-") as tmp:
        started = time.perf_counter()
        bank_path, ledger_path, expected = generate(records, seed, Path(tmp))
        log.info("generated %d + %d records in %.1f s", records, records, time.perf_counter() - started)
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_measure, args=(str(bank_path), str(ledger_path), options, sender))
        child.start()
        sender.close()
        measured = receiver.recv()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the measuring process failed with exit code {child.exitcode}")
    summary = measured["summary"]
    as_generated = (
        summary["results"] == dict(sorted(expected.results.items()))
        and summary["lines_by_outcome"] == dict(sorted(expected.lines.items()))
        and summary["items_by_outcome"] == dict(sorted(expected.items.items()))
    )
    lines_per_s = records / measured["elapsed_s"]
    return {
        "elapsed_s": round(measured["elapsed_s"], 2),
        "cpu_s": round(measured["cpu_s"], 2),
        "lines_per_s": round(lines_per_s),
        "records_per_s": round(2 * records / measured["elapsed_s"]),
        "peak_rss_mib": round(measured["peak_rss_mib"], 1),
        "baseline_rss_mib": round(measured["baseline_rss_mib"], 1),
        "lines_per_cpu_s": round(records / measured["cpu_s"]),
        "speed_check_s": round(measured["speed_check_s"], 3),
        "load_average_before": measured["load_before"],  # 1, 5, 15 min: other processes share the 2 cores
        "load_average_after": measured["load_after"],
        "meets_targets": lines_per_s >= TARGET_LINES_PER_S and measured["peak_rss_mib"] <= TARGET_PEAK_RSS_MIB,
        "as_generated": as_generated,
        "summary": summary,
        "expected": {
            "cases": dict(sorted(expected.cases.items())),
            "results": dict(sorted(expected.results.items())),
            "lines_by_outcome": dict(sorted(expected.lines.items())),
            "items_by_outcome": dict(sorted(expected.items.items())),
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reconciliation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="statement lines (and ledger legs)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--partitions", type=int, help="matcher partitions (default: the matcher's)")
    parser.add_argument("--memory-records", type=int, help="records a spool keeps before spilling (default: matcher's)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the JSON and the doc alone")
    args = parser.parse_args(argv)
    from moncore.reconciliation import matching  # noqa: PLC0415 - defaults for the record

    options = {
        "partitions": args.partitions or matching.DEFAULT_PARTITIONS,
        "memory_records": args.memory_records if args.memory_records is not None else matching.DEFAULT_MEMORY_RECORDS,
    }
    results = run(args.records, args.seed, options)
    log.info(
        "%d lines against %d legs: %.1f s (CPU %.1f s), %d lines/s, peak RSS %.1f MiB (baseline %.1f), "
        "as generated: %s",
        args.records,
        args.records,
        results["elapsed_s"],
        results["cpu_s"],
        results["lines_per_s"],
        results["peak_rss_mib"],
        results["baseline_rss_mib"],
        results["as_generated"],
    )
    if not args.no_write:
        data = {
            "bench": NAME,
            "date": report.now_utc(),
            "machine": report.machine(),
            "parameters": {
                "statement_lines": args.records,
                "ledger_legs": args.records,
                "seed": args.seed,
                "mix": dict(MIX),
                "tolerance_days": matching.DEFAULT_TOLERANCE_DAYS,
                "chunk_records": matching.DEFAULT_CHUNK_RECORDS,
                "sum_rule_max_records": matching.DEFAULT_SUM_RULE_MAX_RECORDS,
                **options,
                "targets": {"lines_per_s": TARGET_LINES_PER_S, "peak_rss_mib": TARGET_PEAK_RSS_MIB},
            },
            "results": results,
        }
        log.info("wrote %s", report.write_json(NAME, data))
        log.info("updated %s", report.update_section(NAME, markdown(data)))
    return 0 if results["as_generated"] else 1


def markdown(data: dict[str, Any]) -> str:
    parameters, results, machine = data["parameters"], data["results"], data["machine"]
    targets = parameters["targets"]
    summary, expected = results["summary"], results["expected"]
    lines = [
        "## Reconciliation: streaming matcher, statement lines against ledger legs",
        "",
        f"`python -m bench reconciliation` (bench/reconciliation.py), {data['date']}: "
        f"{parameters['statement_lines']:,} statement lines against {parameters['ledger_legs']:,} ledger legs "
        f"(seed {parameters['seed']}), {parameters['partitions']} partitions, at most "
        f"{parameters['memory_records']:,} records resident per spool, date tolerance {parameters['tolerance_days']} "
        "days. "
        "Raw data: [bench/results/reconciliation.json](../bench/results/reconciliation.json); design: "
        "[reconciliation.md](reconciliation.md#matching).",
        "",
        "| statement lines | ledger legs | wall s | lines/s | CPU s | lines per CPU s | peak RSS MiB "
        "| baseline RSS MiB | spilled MiB | load avg before / after | speed check s | results as generated "
        "| targets (>= {:,} lines/s, <= {} MiB) |".format(targets["lines_per_s"], targets["peak_rss_mib"]),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
        f"| {parameters['statement_lines']:,} | {parameters['ledger_legs']:,} | {results['elapsed_s']} | "
        f"{results['lines_per_s']:,} | {results['cpu_s']} | {results['lines_per_cpu_s']:,} | "
        f"{results['peak_rss_mib']} | {results['baseline_rss_mib']} | "
        f"{summary['spilled_bytes'] / 2**20:.0f} | {results['load_average_before'][0]} / "
        f"{results['load_average_after'][0]} | {results['speed_check_s']} | "
        f"{'yes' if results['as_generated'] else '**no**'} | {'met' if results['meets_targets'] else '**missed**'} |",
        "",
        "| result | results | statement lines | ledger legs |",
        "|---|---:|---:|---:|",
    ]
    for outcome in sorted(set(summary["results"]) | set(expected["results"])):
        lines.append(
            f"| {outcome} | {summary['results'].get(outcome, 0):,} | {summary['lines_by_outcome'].get(outcome, 0):,} "
            f"| {summary['items_by_outcome'].get(outcome, 0):,} |"
        )
    lines += [
        "",
        "- The input mix (share of generated cases): "
        + ", ".join(f"{kind} {share:.1%}" for kind, share in parameters["mix"].items())
        + ". Amounts are unique per case, so the expected count of every result is exact; *results as generated* "
        "says the matcher's counts equal them.",
        "- *lines/s*: statement lines / wall seconds of the run (reading both inputs from local files, the three "
        "partitioned passes, spill files in the system's temporary directory); *lines per CPU s*: the same over the "
        "CPU time of the process, which other load on the machine disturbs much less. *peak RSS*: ru_maxrss of a "
        "fresh child process that ran only the matcher; *baseline*: its RSS after the imports, before the run. "
        "*spilled*: bytes written to the spill files over all passes. *load avg*: the 1-minute load average of the "
        "machine before and after the run (2 cores: above 2, other processes took CPU time from the run). *speed "
        f"check*: CPU seconds of a fixed {SPEED_CHECK_STEPS:,}-step Python loop in the same process just before "
        "the run, the machine's Python speed at the time (lower is faster).",
        f"- Machine: {machine['cpu_count']} CPUs, {machine['platform']}, Python {machine['python']}; one process "
        "(the matcher is single-threaded). Absolute numbers are local-only.",
    ]
    return "\n".join(lines)
