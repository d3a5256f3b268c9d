"""One DynamoDB TransactWriteItems with labelled items, retried on contention, failures translated to labels.

Why labels: DynamoDB reports cancellation reasons by item position; services need to know *which* guard failed
(the transaction header -> duplicate posting, a balance -> insufficient funds, an account check -> not found ...).
PynamoDB orders items as condition checks, then puts, then updates; the builder keeps its labels in that same order.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from moncore.config import settings
from moncore.domain.errors import ConcurrencyConflict

MAX_ITEMS = 100  # DynamoDB's TransactWriteItems limit
_CONFLICT_ATTEMPTS = 10
_BASE_BACKOFF_MS = 8


@dataclass
class TxStats:
    """Process-local counters of `TxBuilder.execute`, for `bench/` and diagnostics; the kernel never reads them.

    `attempts` counts TransactWriteItems calls, `conflicts` the attempts cancelled by contention (TransactionConflict,
    throttling, TransactionInProgress; each one retried unless it was the last allowed), `gave_up` the executions that
    ended in ConcurrencyConflict. Cost: an uncontended lock and an int increment per attempt, well under a microsecond
    against a network round trip; the lock keeps the counts exact when threads share the process, as in the benches.
    Never reset: readers take `snapshot()` before and after and subtract.

    `observer`, when set (benches only; None in the kernel), is called after every attempt with (item labels, start and
    end in time.perf_counter seconds, outcome: committed | conflict | condition_failed | error). It lets a bench see
    which items were written concurrently, which DynamoDB Local cannot show: it runs transactions one at a time and
    never answers TransactionConflict (docs/hot-accounts.md)."""

    attempts: int = 0
    conflicts: int = 0
    gave_up: int = 0
    observer: Callable[[list[str], float, float, str], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, *, attempts: int = 0, conflicts: int = 0, gave_up: int = 0) -> None:
        with self._lock:
            self.attempts += attempts
            self.conflicts += conflicts
            self.gave_up += gave_up

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"attempts": self.attempts, "conflicts": self.conflicts, "gave_up": self.gave_up}

    def observe(self, tx: TxBuilder, started_s: float, outcome: str) -> None:
        if self.observer is not None:  # the labels are only built when someone listens
            self.observer(tx.labels, started_s, time.perf_counter(), outcome)


STATS = TxStats()


@cache
def connection() -> Connection:
    return Connection(region=settings().region, max_pool_connections=32)


class ConditionFailed(Exception):
    """Some items' conditions failed; `labels` names them (in transaction order)."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(", ".join(labels))
        self.labels = labels


@dataclass
class TxBuilder:
    _checks: list[tuple[str, Callable[[TransactWrite], None]]] = field(default_factory=list)
    _puts: list[tuple[str, Callable[[TransactWrite], None]]] = field(default_factory=list)
    _updates: list[tuple[str, Callable[[TransactWrite], None]]] = field(default_factory=list)

    def check(self, label: str, model_cls: type[Model], hash_key: str, condition: Condition) -> None:
        self._checks.append((label, lambda tw: tw.condition_check(model_cls, hash_key, condition=condition)))

    def put(self, label: str, item: Model, condition: Any = None) -> None:
        self._puts.append((label, lambda tw: tw.save(item, condition=condition)))

    def update(self, label: str, item: Model, actions: Sequence[Action], condition: Any = None) -> None:
        self._updates.append(
            (label, lambda tw: tw.update(item, actions=list(actions), condition=condition, add_version_condition=False))
        )

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in (*self._checks, *self._puts, *self._updates)]

    def __len__(self) -> int:
        return len(self._checks) + len(self._puts) + len(self._updates)

    def execute(self, *, client_request_token: str | None = None) -> None:
        """Commit atomically. Contention (TransactionConflict) is retried with jittered backoff: every item is
        conditional or additive, so a retry can never double-apply; the token makes AWS dedupe retries for 10 min."""
        if len(self) > MAX_ITEMS:
            raise ValueError(f"transaction has {len(self)} items, DynamoDB allows {MAX_ITEMS}")
        for attempt in range(_CONFLICT_ATTEMPTS):
            STATS.count(attempts=1)
            started_s = time.perf_counter()
            try:
                with TransactWrite(connection=connection(), client_request_token=client_request_token) as tw:
                    for _, add in (*self._checks, *self._puts, *self._updates):
                        add(tw)
                STATS.observe(self, started_s, "committed")
                return
            except TransactWriteError as exc:
                codes = [reason.code if reason else "None" for reason in exc.cancellation_reasons]
                failed = [
                    label for label, code in zip(self.labels, codes, strict=False) if code == "ConditionalCheckFailed"
                ]
                if failed:
                    STATS.observe(self, started_s, "condition_failed")
                    raise ConditionFailed(failed) from exc
                if not _is_contention(exc, codes):
                    STATS.observe(self, started_s, "error")
                    raise
                STATS.count(conflicts=1)
                STATS.observe(self, started_s, "conflict")
                time.sleep(random.uniform(0, _BASE_BACKOFF_MS * 2**attempt) / 1000)  # noqa: S311 - jitter, not crypto
        STATS.count(gave_up=1)
        raise ConcurrencyConflict("the accounts involved are busy; nothing was posted, retry with the same key")


def _is_contention(exc: TransactWriteError, codes: list[str]) -> bool:
    if any(code in {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"} for code in codes):
        return True
    return exc.cause_response_code in {"TransactionInProgressException", "ThrottlingException"}
