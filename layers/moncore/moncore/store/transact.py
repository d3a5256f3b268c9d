"""One DynamoDB TransactWriteItems with labelled items, retried on contention, failures translated to labels.

Why labels: DynamoDB reports cancellation reasons by item position; services need to know *which* guard failed
(the transaction header -> duplicate posting, a balance -> insufficient funds, an account check -> not found ...).
PynamoDB orders items as condition checks, then puts, then updates; the builder keeps its labels in that same order.
"""

from __future__ import annotations

import random
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
            try:
                with TransactWrite(connection=connection(), client_request_token=client_request_token) as tw:
                    for _, add in (*self._checks, *self._puts, *self._updates):
                        add(tw)
                return
            except TransactWriteError as exc:
                codes = [reason.code if reason else "None" for reason in exc.cancellation_reasons]
                failed = [
                    label for label, code in zip(self.labels, codes, strict=False) if code == "ConditionalCheckFailed"
                ]
                if failed:
                    raise ConditionFailed(failed) from exc
                if not _is_contention(exc, codes):
                    raise
                time.sleep(random.uniform(0, _BASE_BACKOFF_MS * 2**attempt) / 1000)  # noqa: S311 - jitter, not crypto
        raise ConcurrencyConflict("the accounts involved are busy; nothing was posted, retry with the same key")


def _is_contention(exc: TransactWriteError, codes: list[str]) -> bool:
    if any(code in {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"} for code in codes):
        return True
    return exc.cause_response_code in {"TransactionInProgressException", "ThrottlingException"}
