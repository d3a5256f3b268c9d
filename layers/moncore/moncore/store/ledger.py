"""Ledger persistence: a posting is ONE TransactWriteItems holding the header, the balanced legs, the uniqueness guards,
the account checks, the conditional balance updates and the audit event. No read happens before the write.

Conditions (each one the last line of defence for an invariant):
- header and legs: attribute_not_exists -> one posting per transaction id, i.e. per (tenant, idempotency key) (4, 8);
- guards: attribute_not_exists -> one posting per provider reference (inv. 8);
- user accounts: exist for this tenant, in this currency, ACTIVE (inv. 10);
- balances: available_minor >= amount + floor for every debit (inv. 6).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from moncore.domain.audit import AuditEvent
from moncore.domain.canonical import sha256_hex
from moncore.domain.errors import (
    AccountNotActive,
    CurrencyMismatch,
    InsufficientFunds,
    InvariantViolation,
    NotFound,
    ValidationFailed,
)
from moncore.domain.money import stored_minor
from moncore.domain.transactions import AccountKind, Leg, Transaction, balance_changes, check_zero_sum
from moncore.store.accounts import find_account_item
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import AccountItem, BalanceItem, GuardItem, LedgerItem, tenant_key
from moncore.store.transact import ConditionFailed, TxBuilder

HEADER_SK = "TXN"


class DuplicateTransaction(Exception):
    """The ledger already holds this transaction id: the request was executed before."""


class DuplicateGuard(Exception):
    def __init__(self, guard: str) -> None:
        super().__init__(guard)
        self.guard = guard


@dataclass(frozen=True, slots=True)
class StoredEntry:
    txn_id: str
    leg_no: int
    account_id: str
    currency: str
    amount_minor: int
    phase: str
    recorded_at: str
    effective_at: str
    txn_type: str | None = None


def leg_sk(index: int) -> str:
    return f"LEG#{index:04d}"


def post(txn: Transaction, *, guards: list[str], audit: AuditEvent) -> None:
    """Write `txn` atomically or not at all. Raises DuplicateTransaction, DuplicateGuard, NotFound, CurrencyMismatch,
    AccountNotActive, InsufficientFunds or ConcurrencyConflict; each means nothing was written."""
    check_zero_sum(txn.legs)  # before the write; get_transaction checks again after every read
    tx = TxBuilder()
    changes = balance_changes(txn.legs)
    for change in changes:
        account = change.account
        if account.kind is AccountKind.USER:
            tx.check(
                f"account:{account.account_id}",
                AccountItem,
                tenant_key(txn.tenant_id, account.account_id),
                AccountItem.pk.exists() & (AccountItem.currency == account.currency) & (AccountItem.status == "ACTIVE"),
            )
    tx.put("header", _header_item(txn), LedgerItem.pk.does_not_exist())
    for index, leg in enumerate(txn.legs, start=1):
        tx.put(f"leg:{index}", _leg_item(txn, index, leg), LedgerItem.pk.does_not_exist())
    for guard in guards:
        tx.put(
            f"guard:{guard}",
            GuardItem(tenant_key(txn.tenant_id, guard), owner_id=txn.id, created_at=txn.created_at),
            GuardItem.pk.does_not_exist(),
        )
    tx.put("audit", audit_item(audit), append_condition())
    for change in changes:
        item = BalanceItem(tenant_key(txn.tenant_id, change.account.account_id))
        actions = [
            BalanceItem.posted_minor.add(change.posted_delta_minor),
            BalanceItem.pending_minor.add(change.pending_delta_minor),
            BalanceItem.available_minor.add(change.available_delta_minor),
            BalanceItem.version.add(1),
            BalanceItem.tenant_id.set(txn.tenant_id),
            BalanceItem.account_id.set(change.account.account_id),
            BalanceItem.currency.set(change.account.currency),
            BalanceItem.updated_at.set(txn.created_at),
        ]
        required = change.required_available_minor
        condition = None if required is None else BalanceItem.available_minor >= required
        tx.update(f"balance:{change.account.account_id}", item, actions, condition)
    try:
        # One token per posting attempt (reused by its retries), never per transaction id: a later request with the
        # same key builds other timestamps, and DynamoDB would answer IdempotentParameterMismatch instead of the
        # condition failure that tells us the transaction already exists.
        tx.execute(client_request_token=str(uuid.uuid4()))
    except ConditionFailed as failed:
        raise _diagnose(txn, failed.labels) from None


def _diagnose(txn: Transaction, labels: list[str]) -> Exception:
    """Translate the first failed condition into the error the caller should see (error path only: may read)."""
    label = labels[0]
    if label in {"header", "leg:1"} or label.startswith("leg:"):
        return DuplicateTransaction(txn.id)
    if label.startswith("guard:"):
        return DuplicateGuard(label.removeprefix("guard:"))
    if label.startswith("account:"):
        account_id = label.removeprefix("account:")
        stored = find_account_item(txn.tenant_id, account_id)
        if stored is None:
            return NotFound(f"account {account_id} not found")
        if stored.currency != txn.currency:
            return CurrencyMismatch(f"account {account_id} holds {stored.currency}, not {txn.currency}")
        return AccountNotActive(f"account {account_id} is {stored.status.lower()}")
    if label.startswith("balance:"):
        return InsufficientFunds(f"account {label.removeprefix('balance:')} has insufficient available funds")
    return InvariantViolation(f"unexpected condition failure on {label}")


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
        status=txn.status.value,
        amount_minor=txn.amount_minor,
        currency=txn.currency,
        reference=txn.reference,
        provider=txn.provider,
        provider_ref=txn.provider_ref,
        request_hash=txn.request_hash,
        fingerprint=txn.fingerprint,
        compliance=txn.compliance,
    )


def _leg_item(txn: Transaction, index: int, leg: Leg) -> LedgerItem:
    body: dict[str, Any] = {
        "txn_id": txn.id,
        "leg": index,
        "tenant_id": txn.tenant_id,
        "account_id": leg.account.account_id,
        "currency": leg.currency,
        "amount_minor": leg.amount_minor,
        "phase": leg.phase.value,
        "recorded_at": txn.created_at,
    }
    return LedgerItem(
        tenant_key(txn.tenant_id, txn.id),
        leg_sk(index),
        tenant_id=txn.tenant_id,
        txn_id=txn.id,
        recorded_at=txn.created_at,
        effective_at=txn.created_at,
        correlation_id=txn.correlation_id,
        type=txn.type.value,
        account_pk=tenant_key(txn.tenant_id, leg.account.account_id),
        entry_sk=f"{txn.created_at}#{txn.id}#{index:04d}",
        account_id=leg.account.account_id,
        account_kind=leg.account.kind.value,
        user_id=leg.account.user_id,
        currency=leg.currency,
        leg_amount_minor=leg.amount_minor,
        phase=leg.phase.value,
        provider_ref=txn.provider_ref,
        entry_hash=sha256_hex(body),
    )


def load_transaction_items(tenant_id: str, txn_id: str) -> list[LedgerItem]:
    """Every item of the transaction in sort-key order (legs "LEG#..", then the header "TXN"); [] when unknown."""
    return list(LedgerItem.query(tenant_key(tenant_id, txn_id), consistent_read=True))


def list_entries(
    tenant_id: str, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[StoredEntry], str | None]:
    account_pk = tenant_key(tenant_id, account_id)
    start = _decode_cursor(cursor, account_pk) if cursor else None
    result = LedgerItem.by_account.query(account_pk, limit=limit, last_evaluated_key=start, scan_index_forward=True)
    entries = [
        StoredEntry(
            txn_id=item.txn_id,
            leg_no=int(item.sk.removeprefix("LEG#")),
            account_id=item.account_id or "",
            currency=item.currency or "",
            amount_minor=stored_minor(item.leg_amount_minor),
            phase=item.phase or "",
            recorded_at=item.recorded_at,
            effective_at=item.effective_at,
            txn_type=item.type,
        )
        for item in result
    ]
    last = result.last_evaluated_key
    return entries, (_encode_cursor(last) if last and len(entries) == limit else None)


def _encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, account_pk: str) -> dict[str, Any]:
    """A cursor is only valid for the account (and tenant) it was issued for; anything else is a 422, not a 5xx."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if key["account_pk"]["S"] != account_pk or set(key) != {"account_pk", "entry_sk", "pk", "sk"}:
            raise ValueError("cursor belongs to another listing")
        for name in ("entry_sk", "pk", "sk"):
            if not isinstance(key[name]["S"], str):
                raise ValueError("malformed cursor")
        return dict(key)
    except (ValueError, KeyError, TypeError):
        raise ValidationFailed(
            "cursor is not valid for this listing", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from None
