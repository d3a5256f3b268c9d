"""Rebuild and disaster recovery: recompute every derived item of a tenant from the ledger alone (invariant 2), compare
it with the stored one, and either report each mismatch (verify) or rewrite the derived tables (restore).

Derivations, each computed only from ledger items (headers, events, legs) plus the list of the tenant's accounts:
- balance: one item per (account, shard): the phase effects of the legs posted to that shard (legs carry their shard),
  version = the number of events with legs on it (one per posting); shard 0 of every account exists, zero if unused.
- hold: one row per manual-capture transaction: its events folded (views.txn_state) up to its last hold event
  (reversal links come after settlement and do not touch the row), as store.ledger.hold_item writes it.
- snapshot: one per account and closed UTC day with entries (moncore.domain.snapshots).
- counter: one per (user, currency, UTC day or month) tier-limit counter: the charges recorded by each posting's
  `tier_limits` check (domain.limits.recorded_charges), in the windows of its header's recorded_at; see
  CounterDerivation for what is compared and why.

Safe on a live tenant. The stored derived items are read first, then the ledger (a consistent Scan), and a restore
rewrites an item only if it still has the generation (version, last_seq) read first: a posting that lands during the
run changes it, so its rewrite fails instead of losing that posting, and verify re-reads a mismatched item before
reporting it. Either way such an item is recorded as changed_during_run; the next run settles it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from moncore.domain.clock import now_rfc3339
from moncore.domain.errors import ValidationFailed
from moncore.domain.ids import new_id
from moncore.domain.limits import CounterCharge, recorded_charges
from moncore.domain.money import stored_minor
from moncore.domain.snapshots import SnapshotEntry, fold_days, last_closed_day
from moncore.domain.transactions import HOLDING_CAPTURES, Balance, EventKind, Phase, leg_effect
from moncore.ledger import views
from moncore.store import accounts as account_store
from moncore.store import derived as derived_store
from moncore.store import ledger as ledger_store
from moncore.store import snapshots as snapshot_store
from moncore.store.balances import balance_key
from moncore.store.ledger import HEADER_SK, StoredTxn, counter_key
from moncore.store.models import (
    AccountItem,
    BalanceItem,
    CounterItem,
    ExceptionItem,
    HoldItem,
    LedgerItem,
    SnapshotItem,
    tenant_key,
)

MODES = ("verify", "restore")
Fields = dict[str, int | str | None]


@dataclass(frozen=True, slots=True)
class Derived:
    """One derived item as compared: its key, the attributes that must equal the ledger's, and its generation (what
    every posting touching it changes: a balance's version, a hold's last_seq; 0 for snapshots)."""

    key: str
    fields: Fields
    generation: int = 0
    extra: Fields | None = None  # written on restore, not compared (see CounterDerivation)


@dataclass(frozen=True, slots=True)
class TenantLedger:
    """Everything the derivations may look at: the tenant's ledger items and its accounts."""

    tenant_id: str
    now: str  # the run's instant: which days are closed, and the time written on rewritten items
    accounts: Sequence[AccountItem]
    transactions: Sequence[StoredTxn]
    legs: Sequence[LedgerItem]  # every leg, in entry_sk (recorded) order

    @classmethod
    def read(cls, tenant_id: str, now: str, accounts: Sequence[AccountItem]) -> TenantLedger:
        by_txn: dict[str, list[LedgerItem]] = defaultdict(list)
        for item in ledger_store.scan_tenant(tenant_id):
            by_txn[item.pk].append(item)
        transactions: list[StoredTxn] = []
        legs: list[LedgerItem] = []
        for items in by_txn.values():
            legs.extend(item for item in items if item.sk.startswith(ledger_store.LEG_PREFIX))
            if any(item.sk == HEADER_SK for item in items):  # a posting still arriving may lack it: skip, not fail
                stored = ledger_store.group_transaction(items)
                if stored is not None:
                    transactions.append(stored)
        legs.sort(key=lambda leg: leg.entry_sk or "")
        return cls(tenant_id, now, accounts, transactions, legs)


class Derivation(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def stored(self, tenant_id: str, accounts: Sequence[AccountItem], now: str) -> dict[str, Derived]:
        """The stored items of this kind (read before the ledger); `now` is the run's instant."""

    @abstractmethod
    def expected(self, ledger: TenantLedger) -> dict[str, Derived]:
        """The items of this kind the ledger implies, by key."""

    @abstractmethod
    def reread(self, key: str) -> Derived | None:
        """The stored item now (consistent read)."""

    @abstractmethod
    def write(self, key: str, expected: Derived | None, found: Derived | None, at: str) -> bool:
        """Make the stored item `expected` (None: delete it) if it is still `found`; False if it changed meanwhile."""


# -------------------------------------------------------------------- balances
_BALANCE_NUMBERS = ("shard", "posted_minor", "pending_in_minor", "pending_out_minor", "available_minor", "version")


def _balance_derived(item: BalanceItem) -> Derived:
    fields: Fields = {"tenant_id": item.tenant_id, "account_id": item.account_id, "currency": item.currency}
    fields |= {name: stored_minor(getattr(item, name) or 0) for name in _BALANCE_NUMBERS}
    return Derived(item.pk, fields, stored_minor(item.version or 0))


class BalanceDerivation(Derivation):
    kind = "balance"

    def stored(self, tenant_id: str, accounts: Sequence[AccountItem], now: str) -> dict[str, Derived]:
        keys = [balance_key(tenant_id, a.id, shard) for a in accounts for shard in range(max(1, int(a.shards or 1)))]
        return {key: _balance_derived(item) for key, item in derived_store.balance_items(keys).items()}

    def expected(self, ledger: TenantLedger) -> dict[str, Derived]:
        tenant_id = ledger.tenant_id
        owner: dict[str, tuple[str, str, int]] = {}  # key -> (account, currency, shard)
        totals: dict[str, Balance] = {}
        postings: dict[str, set[tuple[str, int]]] = defaultdict(set)
        for account in ledger.accounts:
            key = balance_key(tenant_id, account.id, 0)
            owner[key], totals[key] = (account.id, account.currency, 0), Balance()
        for leg in ledger.legs:
            shard = stored_minor(leg.shard or 0)
            key = balance_key(tenant_id, leg.account_id or "", shard)
            owner.setdefault(key, (leg.account_id or "", leg.currency or "", shard))
            effect = leg_effect(Phase(leg.phase or ""), stored_minor(leg.leg_amount_minor))
            totals[key] = totals.get(key, Balance()) + Balance(*effect)
            postings[key].add((leg.txn_id, stored_minor(leg.seq)))
        result: dict[str, Derived] = {}
        for key, (account_id, currency, shard) in owner.items():
            balance, version = totals[key], len(postings[key])
            fields: Fields = {
                "tenant_id": tenant_id,
                "account_id": account_id,
                "currency": currency,
                "shard": shard,
                "posted_minor": balance.posted_minor,
                "pending_in_minor": balance.pending_in_minor,
                "pending_out_minor": balance.pending_out_minor,
                "available_minor": balance.available_minor,
                "version": version,
            }
            result[key] = Derived(key, fields, version)
        return result

    def reread(self, key: str) -> Derived | None:
        item = derived_store.balance_item(key)
        return None if item is None else _balance_derived(item)

    def write(self, key: str, expected: Derived | None, found: Derived | None, at: str) -> bool:
        if expected is None:
            return found is None or derived_store.delete_balance_item(key, found.generation)
        item = BalanceItem(key, **_attributes(expected), updated_at=at)
        return derived_store.put_balance_item(item, None if found is None else found.generation)


# -------------------------------------------------------------------- holds
_HOLD_TEXTS = ("tenant_id", "txn_id", "status", "currency", "hold_expires_at", "open_tenant_id")
_HOLD_NUMBERS = ("amount_minor", "captured_minor", "released_minor", "held_minor", "last_seq")


def _hold_derived(item: HoldItem) -> Derived:
    fields: Fields = {name: getattr(item, name) for name in _HOLD_TEXTS}
    fields |= {name: stored_minor(getattr(item, name)) for name in _HOLD_NUMBERS}
    return Derived(item.pk, fields, stored_minor(item.last_seq))


class HoldDerivation(Derivation):
    kind = "hold"

    def stored(self, tenant_id: str, accounts: Sequence[AccountItem], now: str) -> dict[str, Derived]:
        return {item.pk: _hold_derived(item) for item in derived_store.tenant_hold_items(tenant_id)}

    def expected(self, ledger: TenantLedger) -> dict[str, Derived]:
        result: dict[str, Derived] = {}
        for stored in ledger.transactions:
            if stored.header.capture not in HOLDING_CAPTURES:
                continue
            # The row reflects the last event that moved the hold; reversal links (after settlement) never rewrite it.
            hold_events = [e for e in stored.events if e.event != EventKind.REVERSAL_LINKED.value]
            state = views.txn_state(StoredTxn(stored.header, hold_events))
            item = ledger_store.hold_item(ledger_store.header_transaction(stored.header), state, ledger.now)
            result[item.pk] = _hold_derived(item)
        return result

    def reread(self, key: str) -> Derived | None:
        item = derived_store.hold_item(key)
        return None if item is None else _hold_derived(item)

    def write(self, key: str, expected: Derived | None, found: Derived | None, at: str) -> bool:
        if expected is None:
            return found is None or derived_store.delete_hold_item(key, found.generation)
        item = HoldItem(key, **_attributes(expected), updated_at=at)
        return derived_store.put_hold_item(item, None if found is None else found.generation)


# -------------------------------------------------------------------- snapshots
_SNAPSHOT_NUMBERS = ("posted_minor", "pending_in_minor", "pending_out_minor", "available_minor", "entry_count")


def _snapshot_key(pk: str, day: str) -> str:
    return f"{pk}#{day}"


def _snapshot_derived(item: SnapshotItem) -> Derived:
    fields: Fields = {
        "tenant_id": item.tenant_id,
        "account_id": item.account_id,
        "currency": item.currency,
        "last_entry_sk": item.last_entry_sk,
    }
    fields |= {name: stored_minor(getattr(item, name)) for name in _SNAPSHOT_NUMBERS}
    return Derived(_snapshot_key(item.pk, item.sk), fields)


class SnapshotDerivation(Derivation):
    kind = "snapshot"

    def stored(self, tenant_id: str, accounts: Sequence[AccountItem], now: str) -> dict[str, Derived]:
        result: dict[str, Derived] = {}
        for account in accounts:
            for item in snapshot_store.account_snapshots(tenant_id, account.id):
                derived = _snapshot_derived(item)
                result[derived.key] = derived
        return result

    def expected(self, ledger: TenantLedger) -> dict[str, Derived]:
        through = last_closed_day(ledger.now)
        legs_of: dict[str, list[LedgerItem]] = defaultdict(list)
        for leg in ledger.legs:
            legs_of[leg.account_id or ""].append(leg)
        result: dict[str, Derived] = {}
        for account_id, legs in legs_of.items():
            entries = (
                SnapshotEntry(leg.entry_sk or "", Phase(leg.phase or ""), stored_minor(leg.leg_amount_minor))
                for leg in legs
            )
            for snapshot in fold_days(account_id, legs[0].currency or "", entries, start=None, through_day=through):
                derived = _snapshot_derived(snapshot_store.snapshot_item(ledger.tenant_id, snapshot, ledger.now))
                result[derived.key] = derived
        return result

    def reread(self, key: str) -> Derived | None:
        pk, day = key.rsplit("#", 1)
        item = derived_store.snapshot_item(pk, day)
        return None if item is None else _snapshot_derived(item)

    def write(self, key: str, expected: Derived | None, found: Derived | None, at: str) -> bool:
        pk, day = key.rsplit("#", 1)
        if expected is None:
            derived_store.delete_snapshot_item(pk, day)
        else:
            derived_store.put_snapshot_item(SnapshotItem(pk, day, **_attributes(expected), computed_at=at))
        return True


# -------------------------------------------------------------------- tier-limit counters
_COUNTER_TEXTS = ("tenant_id", "user_id", "currency", "window", "period")


def _counter_derived(item: CounterItem) -> Derived:
    fields: Fields = {name: getattr(item, name) for name in _COUNTER_TEXTS}
    fields |= {"total_minor": stored_minor(item.total_minor or 0), "version": stored_minor(item.version or 0)}
    return Derived(item.pk, fields, stored_minor(item.version or 0))


def _epoch_s(instant: str) -> int:
    return int(datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp())


class CounterDerivation(Derivation):
    """Day and month tier-limit counters (docs/limits-and-geo.md). An outgoing posting records, in its header's
    compliance decision, a `tier_limits` check (user, currency, amount, the daily and monthly limits in force) and
    charges the counters of the windows of the header's recorded_at whose limit was not null, in the same
    transaction: so each counter's total and number of charges derive exactly from the ledger.

    Compared: total_minor and version (the number of charges). Not compared: limit_minor (the limit of whichever
    charge committed last, and concurrent postings may commit out of recorded order: not exactly derivable;
    restore writes the limit of the last charge by recorded time), expires_at and updated_at (bookkeeping).
    Only counters still alive at the run's instant are compared (expires_at > now, both sides): DynamoDB TTL
    deletes the others some time after their expiry, so their presence proves nothing."""

    kind = "counter"

    def stored(self, tenant_id: str, accounts: Sequence[AccountItem], now: str) -> dict[str, Derived]:
        alive_after = _epoch_s(now)
        return {
            item.pk: _counter_derived(item)
            for item in derived_store.tenant_counter_items(tenant_id)
            if stored_minor(item.expires_at or 0) > alive_after
        }

    def expected(self, ledger: TenantLedger) -> dict[str, Derived]:
        alive_after = _epoch_s(ledger.now)
        charged: dict[str, list[tuple[str, CounterCharge]]] = defaultdict(list)
        for stored in ledger.transactions:
            header = stored.header
            for check in (header.compliance or {}).get("checks", []):
                if isinstance(check, dict) and check.get("check") == "tier_limits":
                    for charge in recorded_charges(check, header.recorded_at):
                        charged[counter_key(ledger.tenant_id, charge)].append((header.recorded_at, charge))
        result: dict[str, Derived] = {}
        for key, charges in charged.items():
            charges.sort(key=lambda pair: pair[0])
            last = charges[-1][1]
            if last.expires_at <= alive_after:
                continue
            fields: Fields = {
                "tenant_id": ledger.tenant_id,
                "user_id": last.user_id,
                "currency": last.currency,
                "window": last.window,
                "period": last.period,
                "total_minor": sum(charge.delta_minor for _, charge in charges),
                "version": len(charges),
            }
            extra: Fields = {"limit_minor": last.limit_minor, "expires_at": last.expires_at}
            result[key] = Derived(key, fields, len(charges), extra)
        return result

    def reread(self, key: str) -> Derived | None:
        item = derived_store.counter_item(key)
        return None if item is None else _counter_derived(item)

    def write(self, key: str, expected: Derived | None, found: Derived | None, at: str) -> bool:
        if expected is None:
            return found is None or derived_store.delete_counter_item(key, found.generation)
        extra: dict[str, Any] = dict(expected.extra or {})
        item = CounterItem(key, **_attributes(expected), **extra, updated_at=at)
        return derived_store.put_counter_item(item, None if found is None else found.generation)


DERIVATIONS: tuple[Derivation, ...] = (
    BalanceDerivation(),
    HoldDerivation(),
    SnapshotDerivation(),
    CounterDerivation(),
)


# -------------------------------------------------------------------- the job
@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str
    key: str
    expected: Fields | None
    found: Fields | None
    outcome: str  # reported (verify) | restored (restore) | changed_during_run (either)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "expected": self.expected,
            "found": self.found,
            "outcome": self.outcome,
        }


@dataclass
class RebuildReport:
    run_id: str
    tenant_id: str
    mode: str
    now: str
    started_at: str
    finished_at: str = ""
    checked: dict[str, int] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def exceptions(self) -> list[Mismatch]:
        """Mismatches that are not explained by a posting during the run: reported or restored."""
        return [m for m in self.mismatches if m.outcome != "changed_during_run"]

    def counts(self) -> dict[str, int]:
        counts = {"reported": 0, "restored": 0, "changed_during_run": 0}
        for mismatch in self.mismatches:
            counts[mismatch.outcome] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "tenant_id": self.tenant_id,
            "mode": self.mode,
            "now": self.now,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "checked": dict(self.checked),
            "counts": self.counts(),
            "exceptions": [m.as_dict() for m in self.mismatches],
        }


class RebuildService:
    def __init__(self, derivations: Iterable[Derivation] = DERIVATIONS) -> None:
        self.derivations = tuple(derivations)

    def run(self, tenant_id: str, mode: str, *, now: str | None = None) -> RebuildReport:
        """Recompute every derivation for the tenant; `verify` records each mismatch, `restore` also rewrites the
        derived item (only derived tables are written; the ledger, guards and audit are only read)."""
        if mode not in MODES:
            raise ValidationFailed(f"mode must be one of {', '.join(MODES)}", errors=[{"loc": ["mode"], "msg": mode}])
        started = now_rfc3339()
        report = RebuildReport(new_id("run"), tenant_id, mode, now or started, started)
        accounts = account_store.tenant_accounts(tenant_id)
        stored = {d.kind: d.stored(tenant_id, accounts, report.now) for d in self.derivations}  # before the ledger
        ledger = TenantLedger.read(tenant_id, report.now, accounts)
        for derivation in self.derivations:
            expected = derivation.expected(ledger)
            report.checked[derivation.kind] = len(expected)
            report.mismatches += self._compare(derivation, mode, expected, stored[derivation.kind], report.now)
        report.finished_at = now_rfc3339()
        self._record(report)
        return report

    @staticmethod
    def _compare(
        derivation: Derivation, mode: str, expected: Mapping[str, Derived], stored: Mapping[str, Derived], now: str
    ) -> list[Mismatch]:
        mismatches: list[Mismatch] = []
        for key in sorted(expected.keys() | stored.keys()):
            want, found = expected.get(key), stored.get(key)
            if _fields(want) == _fields(found):
                continue
            if mode == "restore":
                outcome = "restored" if derivation.write(key, want, found, now) else "changed_during_run"
            else:
                again = derivation.reread(key)
                changed = (again is None) != (found is None) or (
                    again is not None and found is not None and again.generation != found.generation
                )
                outcome = "changed_during_run" if changed else "reported"
            mismatches.append(Mismatch(derivation.kind, key, _fields(want), _fields(found), outcome))
        return mismatches

    @staticmethod
    def _record(report: RebuildReport) -> None:
        """One append-only exception record per mismatch, then the run's summary."""
        pk = tenant_key(report.tenant_id, report.run_id)
        for mismatch in report.mismatches:
            derived_store.append_exception(
                ExceptionItem(
                    pk,
                    f"{mismatch.kind}#{mismatch.key}",
                    tenant_id=report.tenant_id,
                    run_id=report.run_id,
                    mode=report.mode,
                    kind=mismatch.kind,
                    key=mismatch.key,
                    expected=mismatch.expected,
                    found=mismatch.found,
                    outcome=mismatch.outcome,
                    detected_at=report.finished_at,
                )
            )
        derived_store.append_exception(
            ExceptionItem(
                pk,
                "RUN",
                tenant_id=report.tenant_id,
                run_id=report.run_id,
                mode=report.mode,
                kind="run",
                outcome="completed",
                detected_at=report.finished_at,
                summary={"checked": report.checked, "counts": report.counts(), "now": report.now},
            )
        )


def _attributes(derived: Derived) -> dict[str, Any]:
    """The compared attributes as model keyword arguments."""
    return dict(derived.fields)


def _fields(derived: Derived | None) -> Fields | None:
    return None if derived is None else derived.fields
