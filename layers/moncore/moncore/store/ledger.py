"""Ledger persistence. A posting is ONE TransactWriteItems holding the new headers, the appended events and their
balanced legs, the uniqueness guards, the account checks, the conditional balance updates, the derived hold rows and
the audit event. Nothing is read before the write on the hot path (sharded floored accounts excepted, see below).

Conditions (each one the last line of defence for an invariant):
- header: attribute_not_exists -> one transaction per id, i.e. per (tenant, idempotency key) (invariants 4, 8);
- event slot EVT#n and its legs: attribute_not_exists -> two lifecycle steps can never both build on the same state;
  the loser re-reads and plans again (invariant 9);
- guards: attribute_not_exists -> one posting per provider reference, operation id, ... (invariant 8);
- user accounts: exist for this tenant, in this currency, ACTIVE (invariant 10), and so is their user (a frozen user
  can neither send nor receive; docs/capabilities-and-freezes.md);
- balances: available_minor >= floor - delta on the debited shard (invariant 6); posted_minor <= cap - delta on a
  credited user account with a tier balance cap (invariant 7);
- counters: ADD total_minor :delta with `attribute_not_exists(total_minor) OR total_minor <= :limit - :delta` on the
  payer's day and month counters (invariant 7: tier limits enforced with the posting, never read-then-write).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from moncore.domain.audit import AuditEvent
from moncore.domain.canonical import sha256_hex
from moncore.domain.errors import (
    AccountNotActive,
    CurrencyMismatch,
    DomainError,
    InsufficientFunds,
    InvariantViolation,
    NotFound,
)
from moncore.domain.lifecycle import TxnState
from moncore.domain.limits import BalanceCap, CounterCharge
from moncore.domain.money import stored_minor
from moncore.domain.transactions import (
    AccountKind,
    BalanceChange,
    Event,
    Leg,
    Transaction,
    TxnStatus,
    TxnType,
    balance_changes,
    check_zero_sum,
)
from moncore.domain.velocity import VelocityCharge
from moncore.store import cursors
from moncore.store.accounts import find_account_item, find_user_item
from moncore.store.audit import append_condition, audit_item
from moncore.store.balances import balance_key, shard_balances
from moncore.store.models import (
    AccountItem,
    BalanceItem,
    CounterItem,
    GuardItem,
    HoldItem,
    LedgerItem,
    UserItem,
    tenant_key,
)
from moncore.store.transact import ConditionFailed, TxBuilder
from moncore.store.velocity import velocity_update

HEADER_SK = "TXN"
_ENTRY_KEY = ("account_pk", "entry_sk", "pk", "sk")  # a by_account page key
EVENT_PREFIX = "EVT#"
LEG_PREFIX = "LEG#"


class DuplicateTransaction(Exception):
    """The ledger already holds this transaction id: the request was executed before."""

    def __init__(self, txn_id: str) -> None:
        super().__init__(txn_id)
        self.txn_id = txn_id


class EventSlotTaken(Exception):
    """Another step of this transaction was appended first: re-read the transaction and plan again."""

    def __init__(self, txn_id: str) -> None:
        super().__init__(txn_id)
        self.txn_id = txn_id


class DuplicateGuard(Exception):
    def __init__(self, guard: str) -> None:
        super().__init__(guard)
        self.guard = guard


@dataclass(frozen=True, slots=True)
class PostingCondition:
    """A condition on another item the posting depends on (a card is ACTIVE, ...), checked in the posting's own
    TransactWriteItems so a concurrent change of that item either precedes the posting or fails it; `refusal` is
    what the caller sees when it fails (nothing is written)."""

    name: str
    model: type[Model]
    hash_key: str
    condition: Condition
    refusal: DomainError


@dataclass(frozen=True, slots=True)
class Posting:
    """Everything one atomic write appends. `created` are new transactions (headers); `events` are appended to new or
    existing transactions; `holds` are the derived hold rows of manual-capture transactions after this write."""

    tenant_id: str
    audit: AuditEvent
    created: tuple[Transaction, ...] = ()
    events: tuple[tuple[Transaction, Event], ...] = ()
    guards: tuple[str, ...] = ()
    holds: tuple[tuple[Transaction, TxnState], ...] = ()
    require_active: bool = True  # releasing a hold must work on a frozen account; new money movement must not
    counters: tuple[CounterCharge, ...] = ()  # tier-limit counters charged atomically with the posting
    caps: tuple[BalanceCap, ...] = ()  # tier balance caps of credited user accounts
    velocity: tuple[VelocityCharge, ...] = ()  # rolling-window velocity of the users whose money moves (AML rules)
    records: tuple[Model, ...] = ()  # new items written with the posting or not at all: its AML event, a case
    audits: tuple[AuditEvent, ...] = ()  # audit events of those records (the posting's own is `audit`)
    conditions: tuple[PostingCondition, ...] = ()  # checks of other items (e.g. the card's status)

    @property
    def legs(self) -> list[Leg]:
        return [leg for _, event in self.events for leg in event.legs]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    txn_id: str
    seq: int
    leg_no: int
    account_id: str
    currency: str
    amount_minor: int
    phase: str
    recorded_at: str
    effective_at: str
    txn_type: str | None = None
    shard: int = 0
    fx: dict[str, Any] | None = None
    entry_sk: str = ""
    provider: str | None = None
    provider_ref: str | None = None


@dataclass(frozen=True, slots=True)
class StoredTxn:
    """A transaction as the ledger holds it: the header, its events in order, and every leg."""

    header: LedgerItem
    events: list[LedgerItem] = field(default_factory=list)
    legs: list[LedgerItem] = field(default_factory=list)


def event_sk(seq: int) -> str:
    return f"{EVENT_PREFIX}{seq:04d}"


def leg_sk(seq: int, index: int) -> str:
    return f"{LEG_PREFIX}{seq:04d}#{index:02d}"


# ---------------------------------------------------------------- write
def post(posting: Posting) -> None:
    """Write `posting` atomically or not at all. Raises DuplicateTransaction, EventSlotTaken, DuplicateGuard,
    NotFound, CurrencyMismatch, AccountNotActive, InsufficientFunds or ConcurrencyConflict; each means nothing was
    written."""
    for _, event in posting.events:
        if event.legs:
            check_zero_sum(event.legs)  # before the write; reads check again
    tx = TxBuilder()
    changes = balance_changes(posting.legs)
    shards = {change.account.account_id: _choose_shard(posting.tenant_id, change) for change in changes}
    checked_users: set[str] = set()
    for change in changes:
        if change.account.kind is AccountKind.USER:
            condition = AccountItem.pk.exists() & (AccountItem.currency == change.account.currency)
            if posting.require_active:
                condition = condition & (AccountItem.status == "ACTIVE")
            key = tenant_key(posting.tenant_id, change.account.account_id)
            tx.check(f"account:{change.account.account_id}", AccountItem, key, condition)
            user_id = change.account.user_id
            if posting.require_active and user_id and user_id not in checked_users:
                # A frozen user's accounts neither send nor receive. Once per user: a transaction names an item once.
                checked_users.add(user_id)
                user_key = tenant_key(posting.tenant_id, user_id)
                tx.check(f"user:{user_id}", UserItem, user_key, UserItem.status == "ACTIVE")
    for condition_on in posting.conditions:
        tx.check(f"condition:{condition_on.name}", condition_on.model, condition_on.hash_key, condition_on.condition)
    for txn in posting.created:
        tx.put(f"header:{txn.id}", _header_item(txn), LedgerItem.pk.does_not_exist())
    for txn, event in posting.events:
        tx.put(f"event:{txn.id}:{event.seq}", _event_item(txn, event), LedgerItem.pk.does_not_exist())
        for index, leg in enumerate(event.legs, start=1):
            item = _leg_item(txn, event, index, leg, shards[leg.account.account_id])
            tx.put(f"leg:{txn.id}:{event.seq}:{index}", item, LedgerItem.pk.does_not_exist())
    for guard in posting.guards:
        owner = posting.created[0].id if posting.created else posting.events[0][0].id
        guard_item = GuardItem(
            tenant_key(posting.tenant_id, guard), owner_id=owner, created_at=posting.audit.recorded_at
        )
        tx.put(f"guard:{guard}", guard_item, GuardItem.pk.does_not_exist())
    tx.put("audit", audit_item(posting.audit), append_condition())
    for txn, state in posting.holds:
        tx.put(f"hold:{txn.id}", hold_item(txn, state, posting.audit.recorded_at))
    for change in changes:
        _balance_update(tx, posting, change, shards[change.account.account_id])
    for index, charge in enumerate(posting.counters):
        _counter_update(tx, posting, index, charge)
    for movement in posting.velocity:
        velocity_item, velocity_actions = velocity_update(posting.tenant_id, movement)
        tx.update(f"velocity:{movement.user_id}:{movement.currency}", velocity_item, velocity_actions)
    for index, record in enumerate(posting.records):
        tx.put(f"record:{index}:{type(record).__name__}", record, type(record)._hash_key_attribute().does_not_exist())
    for index, extra in enumerate(posting.audits):
        tx.put(f"audit:{index}", audit_item(extra), append_condition())
    try:
        # One token per posting attempt (reused by its retries), never per transaction id: a later request with the
        # same key builds other timestamps, and DynamoDB would answer IdempotentParameterMismatch instead of the
        # condition failure that tells us the transaction already exists.
        tx.execute(client_request_token=str(uuid.uuid4()))
    except ConditionFailed as failed:
        raise _diagnose(posting, failed.labels) from None


def _balance_update(tx: TxBuilder, posting: Posting, change: BalanceChange, shard: int) -> None:
    account = change.account
    item = BalanceItem(balance_key(posting.tenant_id, account.account_id, shard))
    actions = [
        BalanceItem.posted_minor.add(change.posted_delta_minor),
        BalanceItem.pending_in_minor.add(change.pending_in_delta_minor),
        BalanceItem.pending_out_minor.add(change.pending_out_delta_minor),
        BalanceItem.available_minor.add(change.available_delta_minor),
        BalanceItem.version.add(1),
        BalanceItem.tenant_id.set(posting.tenant_id),
        BalanceItem.account_id.set(account.account_id),
        BalanceItem.currency.set(account.currency),
        BalanceItem.shard.set(shard),
        BalanceItem.updated_at.set(posting.audit.recorded_at),
    ]
    required = change.required_available_minor
    condition = None if required is None else BalanceItem.available_minor >= required
    cap = next((cap for cap in posting.caps if cap.account_id == account.account_id), None)
    if cap is not None and change.posted_delta_minor > 0:
        capped = BalanceItem.posted_minor <= cap.cap_minor - change.posted_delta_minor
        condition = capped if condition is None else condition & capped
    tx.update(f"balance:{account.account_id}:{shard}", item, actions, condition)


def counter_key(tenant_id: str, charge: CounterCharge) -> str:
    return window_counter_key(tenant_id, charge.user_id, charge.currency, charge.window, charge.period)


def window_counter_key(tenant_id: str, user_id: str, currency: str, window: str, period: str) -> str:
    return tenant_key(tenant_id, "user", user_id, currency, window, period)


def counter_usage(tenant_id: str, user_id: str, currency: str, moment: str) -> dict[str, int]:
    """What the user sent out in `currency` in the UTC day and month of `moment`: {"day": .., "month": ..}."""
    keys = {
        window_counter_key(tenant_id, user_id, currency, "day", moment[:10]): "day",
        window_counter_key(tenant_id, user_id, currency, "month", moment[:7]): "month",
    }
    return {keys[item.pk]: int(item.total_minor) for item in CounterItem.batch_get(list(keys), consistent_read=True)}


def _counter_update(tx: TxBuilder, posting: Posting, index: int, charge: CounterCharge) -> None:
    """Add the charge to its window counter only while the total stays within the limit. The first charge of a
    window finds no total: `attribute_not_exists` admits it, which is why a charge above the limit on its own is
    refused before the write (domain.limits.outgoing_charges)."""
    if not 0 < charge.delta_minor <= charge.limit_minor:
        raise InvariantViolation(f"counter charge {charge} was not checked against its limit before the write")
    item = CounterItem(counter_key(posting.tenant_id, charge))
    actions = [
        CounterItem.total_minor.add(charge.delta_minor),
        CounterItem.version.add(1),
        CounterItem.tenant_id.set(posting.tenant_id),
        CounterItem.user_id.set(charge.user_id),
        CounterItem.currency.set(charge.currency),
        CounterItem.window.set(charge.window),
        CounterItem.period.set(charge.period),
        CounterItem.limit_minor.set(charge.limit_minor),
        CounterItem.updated_at.set(posting.audit.recorded_at),
        CounterItem.expires_at.set(charge.expires_at),
    ]
    condition = CounterItem.total_minor.does_not_exist() | (
        CounterItem.total_minor <= charge.limit_minor - charge.delta_minor
    )
    tx.update(f"counter:{index}", item, actions, condition)


def _choose_shard(tenant_id: str, change: BalanceChange) -> int:
    """Shard 0 for ordinary accounts and for holds. For a sharded account: any shard (random) when nothing is
    checked; for a debit
    that must respect a floor, the shard with the most available, whose own item then carries the floor condition
    (each shard >= 0 keeps the sum >= 0, so sharding never loses an overdraft check; it may refuse a debit the sum
    could cover, never accept one it could not)."""
    shard_count = change.account.shards
    if shard_count <= 1:
        return 0
    if change.pending_in_delta_minor or change.pending_out_delta_minor:
        # A hold on a hot account (a payout or card clearing, a reviewed funding's clearing) and its capture or
        # release must land on one shard, or a shard would show a negative pending amount: holds live on shard 0.
        return 0
    if change.required_available_minor is None:
        return random.randrange(shard_count)  # noqa: S311 - load spreading, not security
    found = shard_balances(tenant_id, change.account)
    return max(found, key=lambda shard: found[shard][0].available_minor)


def _diagnose(posting: Posting, labels: list[str]) -> Exception:
    """Translate the failed conditions into the error the caller should see (error path only: may read). A
    duplicate of the whole request wins over anything else, so a replay is never mistaken for a refusal."""
    created = {txn.id for txn in posting.created}
    by_kind: dict[str, list[str]] = {}
    for label in labels:
        by_kind.setdefault(label.split(":", 1)[0], []).append(label)
    for label in by_kind.get("header", []):
        return DuplicateTransaction(label.split(":")[1])
    for label in by_kind.get("event", []) + by_kind.get("leg", []):
        txn_id = label.split(":")[1]
        return DuplicateTransaction(txn_id) if txn_id in created else EventSlotTaken(txn_id)
    for label in by_kind.get("guard", []):
        return DuplicateGuard(label.removeprefix("guard:"))
    for label in by_kind.get("condition", []):
        name = label.removeprefix("condition:")
        return next(condition_on.refusal for condition_on in posting.conditions if condition_on.name == name)
    for label in by_kind.get("account", []):
        account_id = label.removeprefix("account:")
        stored = find_account_item(posting.tenant_id, account_id)
        if stored is None:
            return NotFound(f"account {account_id} not found")
        currencies = {leg.currency for leg in posting.legs if leg.account.account_id == account_id}
        if stored.currency not in currencies:
            wanted = ", ".join(sorted(currencies))
            return CurrencyMismatch(f"account {account_id} holds {stored.currency}, not {wanted}")
        return AccountNotActive(f"account {account_id} is {stored.status.lower()}")
    for label in by_kind.get("user", []):
        user_id = label.removeprefix("user:")
        user = find_user_item(posting.tenant_id, user_id)
        status = "missing" if user is None else user.status.lower()
        return AccountNotActive(f"user {user_id} is {status}: their accounts can neither send nor receive")
    changes = {change.account.account_id: change for change in balance_changes(posting.legs)}
    for label in by_kind.get("balance", []):
        account_id = label.split(":")[1]
        change = changes.get(account_id)
        cap = next((cap for cap in posting.caps if cap.account_id == account_id), None)
        if cap is not None and change is not None and change.required_available_minor is None:
            return cap.refusal(change.posted_delta_minor)
        return InsufficientFunds(f"account {account_id} has insufficient available funds")
    for label in by_kind.get("counter", []):
        return posting.counters[int(label.split(":")[1])].refusal()
    return InvariantViolation(f"unexpected condition failure on {', '.join(labels)}")


def _header_item(txn: Transaction) -> LedgerItem:
    return LedgerItem(
        tenant_key(txn.tenant_id, txn.id),
        HEADER_SK,
        tenant_id=txn.tenant_id,
        txn_id=txn.id,
        recorded_at=txn.created_at,
        effective_at=txn.created_at,
        correlation_id=txn.correlation_id,
        type=txn.type.value,
        status=TxnStatus.CREATED.value,
        amount_minor=txn.amount_minor,
        currency=txn.currency,
        reference=txn.reference,
        provider=txn.provider,
        provider_ref=txn.provider_ref,
        request_hash=txn.request_hash,
        fingerprint=txn.fingerprint,
        compliance=txn.compliance,
        capture=txn.capture,
        hold_expires_at=txn.hold_expires_at,
        reverses_txn_id=txn.reverses_txn_id,
        fx=txn.fx,
        account_id=txn.account_id,
    )


def _event_item(txn: Transaction, event: Event) -> LedgerItem:
    return LedgerItem(
        tenant_key(txn.tenant_id, txn.id),
        event_sk(event.seq),
        tenant_id=txn.tenant_id,
        txn_id=txn.id,
        recorded_at=event.recorded_at,
        effective_at=event.recorded_at,
        correlation_id=event.correlation_id,
        type=txn.type.value,
        seq=event.seq,
        event=event.kind.value,
        status=event.status.value,
        amount_minor=event.amount_minor,
        currency=txn.currency,
        op_id=event.op_id,
        request_hash=event.request_hash,
        actor=event.actor,
        reason=event.reason,
        related_txn_id=event.related_txn_id,
        provider_ref=event.provider_ref,
    )


def _leg_item(txn: Transaction, event: Event, index: int, leg: Leg, shard: int) -> LedgerItem:
    body: dict[str, Any] = {
        "txn_id": txn.id,
        "seq": event.seq,
        "leg": index,
        "tenant_id": txn.tenant_id,
        "account_id": leg.account.account_id,
        "currency": leg.currency,
        "amount_minor": leg.amount_minor,
        "phase": leg.phase.value,
        "recorded_at": event.recorded_at,
        "fx": dict(leg.fx) if leg.fx else None,
    }
    return LedgerItem(
        tenant_key(txn.tenant_id, txn.id),
        leg_sk(event.seq, index),
        tenant_id=txn.tenant_id,
        txn_id=txn.id,
        recorded_at=event.recorded_at,
        effective_at=event.recorded_at,
        correlation_id=event.correlation_id,
        type=txn.type.value,
        seq=event.seq,
        account_pk=tenant_key(txn.tenant_id, leg.account.account_id),
        entry_sk=f"{event.recorded_at}#{txn.id}#{event.seq:04d}#{index:02d}",
        account_id=leg.account.account_id,
        account_kind=leg.account.kind.value,
        user_id=leg.account.user_id,
        currency=leg.currency,
        leg_amount_minor=leg.amount_minor,
        phase=leg.phase.value,
        shard=shard,
        fx=dict(leg.fx) if leg.fx else None,
        provider=txn.provider,  # on every leg too: reconciliation matches bank lines to legs without the headers
        provider_ref=txn.provider_ref,
        entry_hash=sha256_hex(body),
    )


def hold_item(txn: Transaction, state: TxnState, updated_at: str) -> HoldItem:
    if txn.hold_expires_at is None and txn.capture == "manual":
        raise InvariantViolation(f"transaction {txn.id} holds funds without an expiry")
    # Only manual holds are in the expiry index: a review hold waits for its case, however long that takes.
    open_hold = state.status is TxnStatus.AUTHORIZED and txn.capture == "manual"
    return HoldItem(
        tenant_key(txn.tenant_id, txn.id),
        tenant_id=txn.tenant_id,
        txn_id=txn.id,
        status=state.status.value,
        amount_minor=state.amount_minor,
        captured_minor=state.captured_minor,
        released_minor=state.released_minor,
        held_minor=state.held_minor,
        currency=txn.currency,
        last_seq=state.last_seq,
        hold_expires_at=txn.hold_expires_at,
        open_tenant_id=txn.tenant_id if open_hold else None,
        updated_at=updated_at,
    )


# ---------------------------------------------------------------- read
def load_transaction(tenant_id: str, txn_id: str) -> StoredTxn | None:
    """The transaction as stored (consistent read), or None when unknown."""
    items = list(LedgerItem.query(tenant_key(tenant_id, txn_id), consistent_read=True))
    return group_transaction(items)


def group_transaction(items: Iterable[LedgerItem]) -> StoredTxn | None:
    header: LedgerItem | None = None
    events: list[LedgerItem] = []
    legs: list[LedgerItem] = []
    for item in items:
        if item.sk == HEADER_SK:
            header = item
        elif item.sk.startswith(EVENT_PREFIX):
            events.append(item)
        elif item.sk.startswith(LEG_PREFIX):
            legs.append(item)
    if header is None:
        if events or legs:
            raise InvariantViolation("transaction has events or legs but no header")
        return None
    return StoredTxn(header, sorted(events, key=lambda e: e.sk), sorted(legs, key=lambda e: e.sk))


def header_transaction(header: LedgerItem) -> Transaction:
    """A stored header as the domain Transaction (what appended events, legs and hold rows need to know of it)."""
    return Transaction(
        id=header.txn_id,
        tenant_id=header.tenant_id,
        type=TxnType(header.type or ""),
        amount_minor=stored_minor(header.amount_minor),
        currency=header.currency or "",
        created_at=header.recorded_at,
        request_hash=header.request_hash or "",
        correlation_id=header.correlation_id or "",
        reference=header.reference,
        provider=header.provider,
        provider_ref=header.provider_ref,
        capture=header.capture or "auto",
        hold_expires_at=header.hold_expires_at,
        reverses_txn_id=header.reverses_txn_id,
        fx=header.fx,
        account_id=header.account_id,
    )


def stored_entry(item: LedgerItem) -> StoredEntry:
    return StoredEntry(
        txn_id=item.txn_id,
        seq=stored_minor(item.seq),
        leg_no=int(item.sk.rsplit("#", 1)[1]),
        account_id=item.account_id or "",
        currency=item.currency or "",
        amount_minor=stored_minor(item.leg_amount_minor),
        phase=item.phase or "",
        recorded_at=item.recorded_at,
        effective_at=item.effective_at,
        txn_type=item.type,
        shard=stored_minor(item.shard or 0),
        fx=item.fx,
        entry_sk=item.entry_sk or "",
        provider=item.provider,
        provider_ref=item.provider_ref,
    )


def list_entries(
    tenant_id: str, account_id: str, *, limit: int, cursor: str | None, as_of: str | None = None
) -> tuple[list[StoredEntry], str | None]:
    """Entries of the account in recorded order; with `as_of` (normalised RFC 3339) only those recorded by then."""
    account_pk = tenant_key(tenant_id, account_id)
    start = (
        cursors.decode(cursor, names=_ENTRY_KEY, scope_name="account_pk", scope_value=account_pk) if cursor else None
    )
    condition = None if as_of is None else LedgerItem.entry_sk <= f"{as_of}#~"  # "~" sorts after every id char
    result = LedgerItem.by_account.query(
        account_pk, condition, limit=limit, last_evaluated_key=start, scan_index_forward=True
    )
    entries = [stored_entry(item) for item in result]
    last = result.last_evaluated_key
    return entries, (cursors.encode(last) if last and len(entries) == limit else None)


def account_entries(
    tenant_id: str, account_id: str, *, upto: str | None = None, since: str | None = None
) -> Iterable[StoredEntry]:
    """Every entry of the account (all pages), optionally only those recorded at or before the instant `upto` and at
    or after the instant `since` (both normalised RFC 3339)."""
    high = None if upto is None else f"{upto}#~"  # "~" sorts after every id char: the whole instant is included
    condition: Condition | None
    if since is not None and high is not None:
        condition = LedgerItem.entry_sk.between(since, high)
    elif since is not None:
        condition = LedgerItem.entry_sk >= since
    else:
        condition = None if high is None else LedgerItem.entry_sk <= high
    for item in LedgerItem.by_account.query(tenant_key(tenant_id, account_id), condition, scan_index_forward=True):
        yield stored_entry(item)


def scan_tenant(tenant_id: str, *, segments: int = 4) -> list[LedgerItem]:
    """Every ledger item (headers, events, legs) of the tenant: a Scan of the whole Ledger table filtered by tenant,
    split in `segments` parallel segments, consistent reads. For the rebuild/disaster-recovery job only: it reads (and
    pays for) every tenant's items, see docs/snapshots-and-rebuild.md."""

    def segment(number: int) -> list[LedgerItem]:
        return list(
            LedgerItem.scan(
                LedgerItem.tenant_id == tenant_id, segment=number, total_segments=segments, consistent_read=True
            )
        )

    with ThreadPoolExecutor(max_workers=segments) as pool:
        return [item for part in pool.map(segment, range(segments)) for item in part]


def due_holds(tenant_id: str, now: str, *, limit: int = 100) -> list[HoldItem]:
    """Open holds of the tenant whose expiry is at or before `now`, soonest first."""
    condition = HoldItem.hold_expires_at <= now
    return list(HoldItem.open_by_expiry.query(tenant_id, condition, limit=limit))
