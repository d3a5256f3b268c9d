"""What the API answers for ledger objects, built from stored items and checked again after the read (both sides)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from moncore.domain.errors import InvariantViolation
from moncore.domain.lifecycle import StoredEvent, TxnState, fold
from moncore.domain.money import format_minor, stored_minor
from moncore.domain.transactions import (
    AccountKind,
    AccountRef,
    Balance,
    EventKind,
    Leg,
    Phase,
    TxnStatus,
    TxnType,
    check_zero_sum,
)
from moncore.store.ledger import StoredEntry, StoredTxn
from moncore.store.models import AccountItem, UserItem


def txn_state(stored: StoredTxn) -> TxnState:
    """Fold the stored events: the single way the current status and amounts of a transaction are known."""
    header = stored.header
    return fold(
        TxnType(header.type or ""),
        stored_minor(header.amount_minor),
        (
            StoredEvent(
                seq=stored_minor(e.seq),
                kind=EventKind(e.event or ""),
                status=TxnStatus(e.status or ""),
                amount_minor=stored_minor(e.amount_minor),
                related_txn_id=e.related_txn_id,
            )
            for e in stored.events
        ),
    )


def submitted_ref(stored: StoredTxn) -> str | None:
    """The provider reference of a withdrawal's submission, once it was handed to the provider."""
    return next((e.provider_ref for e in stored.events if e.event == EventKind.SUBMITTED.value), None)


def provider_ref(stored: StoredTxn) -> str | None:
    """The provider's reference of the transaction: on its header (a funding, a card authorisation, a conversion),
    or that of its submission (a withdrawal, whose header is written before the provider is called)."""
    return stored.header.provider_ref or submitted_ref(stored)


def transaction_view(stored: StoredTxn) -> dict[str, Any]:
    header = stored.header
    state = txn_state(stored)
    currency = header.currency or ""
    legs = [
        {
            "account_id": leg.account_id,
            "currency": leg.currency,
            "amount_minor": stored_minor(leg.leg_amount_minor),
            "amount": format_minor(stored_minor(leg.leg_amount_minor), leg.currency or ""),
            "phase": leg.phase,
            "seq": stored_minor(leg.seq),
            **({"fx": leg.fx} if leg.fx else {}),
        }
        for leg in stored.legs
    ]
    _check_legs_balance(stored)
    lifecycle: list[dict[str, Any]] = [{"status": TxnStatus.CREATED.value, "at": header.recorded_at, "seq": 0}]
    for e in stored.events:
        step: dict[str, Any] = {
            "seq": stored_minor(e.seq),
            "event": e.event,
            "status": e.status,
            "at": e.recorded_at,
            "amount_minor": stored_minor(e.amount_minor),
            "actor": e.actor,
            "correlation_id": e.correlation_id,
        }
        if e.reason:
            step["reason"] = e.reason
        if e.related_txn_id:
            step["related_txn_id"] = e.related_txn_id
        lifecycle.append(step)
    amount_minor = stored_minor(header.amount_minor)
    view: dict[str, Any] = {
        "id": header.txn_id,
        "type": header.type,
        "status": state.status.value,
        "amount_minor": amount_minor,
        "amount": format_minor(amount_minor, currency),
        "currency": currency,
        "reference": header.reference,
        "capture": header.capture or "auto",
        "captured_minor": state.captured_minor,
        # What was held in all: the amount plus every increase (a card's incremental authorisations).
        "authorized_minor": state.amount_minor,
        "held_minor": state.held_minor,
        "released_minor": state.released_minor,
        "reversed_minor": state.reversed_minor,
        "legs": legs,
        "lifecycle": lifecycle,
        "reversals": [
            {"txn_id": e.related_txn_id, "amount_minor": stored_minor(e.amount_minor), "at": e.recorded_at}
            for e in stored.events
            if e.event == EventKind.REVERSAL_LINKED.value
        ],
        "compliance": header.compliance or {},
        "created_at": header.recorded_at,
        "updated_at": stored.events[-1].recorded_at if stored.events else header.recorded_at,
        "correlation_id": header.correlation_id,
    }
    if header.hold_expires_at:
        view["hold_expires_at"] = header.hold_expires_at
    if header.reverses_txn_id:
        view["reverses_txn_id"] = header.reverses_txn_id
    if header.fx:
        view["fx"] = header.fx
    if header.provider:
        view["provider"] = {"name": header.provider, "reference": provider_ref(stored)}
    if header.account_id:  # fundings and withdrawals name the user account they are for
        view["account_id"] = header.account_id
    return view


def _check_legs_balance(stored: StoredTxn) -> None:
    """Invariant 1 after the read: each event's legs sum to zero per currency."""
    by_event: dict[int, list[Leg]] = defaultdict(list)
    for leg in stored.legs:
        ref = AccountRef(leg.account_id or "", leg.currency or "", AccountKind.USER)
        by_event[stored_minor(leg.seq)].append(Leg(ref, stored_minor(leg.leg_amount_minor), Phase(leg.phase or "")))
    for legs in by_event.values():
        check_zero_sum(legs)
    if any(seq < 1 or seq > len(stored.events) for seq in by_event):
        raise InvariantViolation(f"transaction {stored.header.txn_id} has legs of an event it does not hold")


def entry_view(entry: StoredEntry) -> dict[str, Any]:
    view: dict[str, Any] = {
        "txn_id": entry.txn_id,
        "seq": entry.seq,
        "leg": entry.leg_no,
        "type": entry.txn_type,
        "account_id": entry.account_id,
        "currency": entry.currency,
        "amount_minor": entry.amount_minor,
        "amount": format_minor(entry.amount_minor, entry.currency),
        "phase": entry.phase,
        "recorded_at": entry.recorded_at,
        "effective_at": entry.effective_at,
    }
    if entry.fx:
        view["fx"] = entry.fx
    return view


def balance_view(balance: Balance, currency: str, version: int) -> dict[str, Any]:
    return {
        "posted_minor": balance.posted_minor,
        "pending_minor": balance.pending_minor,
        "available_minor": balance.available_minor,
        "pending_in_minor": balance.pending_in_minor,
        "pending_out_minor": balance.pending_out_minor,
        "posted": format_minor(balance.posted_minor, currency),
        "pending": format_minor(balance.pending_minor, currency),
        "available": format_minor(balance.available_minor, currency),
        "version": version,
    }


def user_view(item: UserItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "external_ref": item.external_ref,
        "full_name": item.full_name,
        "country": item.country,
        "date_of_birth": item.date_of_birth,
        "tier": item.tier,
        # The kernel's KYC adjudication behind the tier (docs/kyc.md): unverified | verified | review | rejected |
        # expired, when it was last decided and when its evidence expires.
        "kyc_status": item.kyc_status or "unverified",
        "kyc_checked_at": item.kyc_checked_at,
        "kyc_expires_at": item.kyc_expires_at,
        "status": item.status.lower(),
        # clear | pending_review | confirmed (docs/screening.md); users created before screening count as clear
        "screening_status": item.screening_status or "clear",
        "created_at": item.created_at,
    }


def account_view(item: AccountItem) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": item.id,
        "user_id": item.user_id,
        "currency": item.currency,
        "kind": item.kind,
        "status": item.status.lower(),
        "created_at": item.created_at,
    }
    if item.merchant:  # a merchant account (QR payment requests, docs/providers.md)
        view["merchant"] = dict(item.merchant)
    return view
