"""Cards table (docs/providers.md, "Cards"): cards, the issuer token -> card lookup, card clearing records, shadow
clearing totals, and the sandbox card provider's failure plan.

- A card is created once (conditional put, id derived from the idempotency key) with its token lookup and audit
  event in one TransactWriteItems; a status change is a conditional update (on the status read) with its audit event.
- A clearing record is written once per (provider, event id). A shadow record is written with the update of its
  authorisation's shadow totals (conditional on their version) and its audit event, so the totals are exactly the
  sum of the shadow records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from pynamodb.exceptions import PutError, UpdateError

from moncore.domain.audit import PLATFORM_TENANT, AuditEvent
from moncore.domain.cards import CardStatus, ShadowTotals
from moncore.domain.errors import AlreadyExists, CardNotActive
from moncore.domain.lifecycle import Step
from moncore.domain.money import stored_minor
from moncore.store.audit import append_condition, audit_item
from moncore.store.ledger import PostingCondition
from moncore.store.models import (
    CardClearingItem,
    CardItem,
    CardTokenItem,
    SandboxFaultItem,
    ShadowClearingStateItem,
    tenant_key,
)
from moncore.store.transact import ConditionFailed, TxBuilder

CARD_KIND = "card"
CLEARING_KIND = "clearing"
_FAULT_TTL_S = 86_400


class CardMoved(Exception):
    """The card's status is no longer the one read: read it again."""


class ShadowTotalsMoved(Exception):
    """Another shadow clearing of the same authorisation was recorded first: compute again."""


def card_key(tenant_id: str, card_id: str) -> str:
    return tenant_key(tenant_id, card_id)


def token_key(issuer: str, token: str) -> str:
    return tenant_key(PLATFORM_TENANT, "card_token", issuer, token)


def tenant_kind(tenant_id: str, kind: str) -> str:
    return tenant_key(tenant_id, kind)


# ------------------------------------------------------------------------------------------------ cards
def create_card(card: CardItem, token: CardTokenItem, audit: AuditEvent) -> None:
    """The card, its token lookup and the audit event, or nothing (AlreadyExists: the card id or token exists)."""
    tx = TxBuilder()
    tx.put("card", card, CardItem.pk.does_not_exist())
    tx.put("token", token, CardTokenItem.pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise AlreadyExists(f"card {card.id} (or its issuer token) already exists") from None


def find_card(tenant_id: str, card_id: str) -> CardItem | None:
    try:
        return CardItem.get(card_key(tenant_id, card_id), consistent_read=True)
    except CardItem.DoesNotExist:
        return None


def find_token(issuer: str, token: str) -> CardTokenItem | None:
    try:
        return CardTokenItem.get(token_key(issuer, token), consistent_read=True)
    except CardTokenItem.DoesNotExist:
        return None


def change_status(
    card: CardItem, status: CardStatus, *, reason: str | None, actor: str, at: str, audit: AuditEvent
) -> None:
    """Move the card to `status` if it is still in the status read (CardMoved otherwise), with its audit event."""
    tx = TxBuilder()
    tx.update(
        "card",
        CardItem(card.pk),
        [
            CardItem.status.set(status.value),
            CardItem.status_reason.set(reason) if reason else CardItem.status_reason.remove(),
            CardItem.status_changed_by.set(actor),
            CardItem.status_changed_at.set(at),
            CardItem.updated_at.set(at),
        ],
        CardItem.pk.exists() & (CardItem.status == card.status),
    )
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed:
        raise CardMoved(card.id) from None


def confirm_issuer_status(card: CardItem, status: CardStatus, at: str) -> None:
    """Record that the issuer now has the card in `status`, unless the card moved on meanwhile (a later change
    will send its own status)."""
    try:
        CardItem(card.pk).update(
            actions=[CardItem.issuer_status.set(status.value), CardItem.updated_at.set(at)],
            condition=CardItem.status == status.value,
        )
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


def active_condition(tenant_id: str, card_id: str) -> PostingCondition:
    """For a posting that authorises on the card: it must still be ACTIVE when the posting commits, so a freeze
    either precedes the posting (which then fails) or follows it."""
    return PostingCondition(
        name=f"card:{card_id}",
        model=CardItem,
        hash_key=card_key(tenant_id, card_id),
        condition=CardItem.pk.exists() & (CardItem.status == CardStatus.ACTIVE.value),
        refusal=CardNotActive(f"card {card_id} is frozen or closed: its authorisations are declined"),
    )


def card_counts(tenant_id: str) -> dict[str, int]:
    """How many cards the tenant issued, per status (the sparse by_tenant index: cards only)."""
    counts: Counter[str] = Counter()
    for card in CardItem.by_tenant.query(tenant_kind(tenant_id, CARD_KIND), attributes_to_get=["status"]):
        counts[str(card.status)] += 1
    return dict(counts)


# ------------------------------------------------------------------------------------------------ clearings
def clearing_key(tenant_id: str, provider: str, event_id: str) -> str:
    return tenant_key(tenant_id, "clearing", provider, event_id)


def shadow_key(tenant_id: str, txn_id: str) -> str:
    return tenant_key(tenant_id, "shadow", txn_id)


def find_clearing(tenant_id: str, provider: str, event_id: str) -> CardClearingItem | None:
    try:
        return CardClearingItem.get(clearing_key(tenant_id, provider, event_id), consistent_read=True)
    except CardClearingItem.DoesNotExist:
        return None


def shadow_totals(tenant_id: str, txn_id: str) -> ShadowTotals:
    try:
        item = ShadowClearingStateItem.get(shadow_key(tenant_id, txn_id), consistent_read=True)
    except ShadowClearingStateItem.DoesNotExist:
        return ShadowTotals()
    return ShadowTotals(
        stored_minor(item.captured_minor),
        stored_minor(item.released_minor),
        stored_minor(item.reversed_minor),
        stored_minor(item.version),
    )


def record_shadow(record: CardClearingItem, seen: ShadowTotals, steps: tuple[Step, ...], audit: AuditEvent) -> None:
    """The shadow record, the authorisation's shadow totals (+ `steps`, conditional on the version `seen`) and the
    audit event, together. AlreadyExists: this event was recorded before; ShadowTotalsMoved: compute again."""
    after = seen.plus(steps)
    tx = TxBuilder()
    tx.put("record", record, CardClearingItem.pk.does_not_exist())
    state = ShadowClearingStateItem(
        shadow_key(record.tenant_id, record.txn_id),
        tenant_id=record.tenant_id,
        txn_id=record.txn_id,
        captured_minor=after.captured_minor,
        released_minor=after.released_minor,
        reversed_minor=after.reversed_minor,
        version=seen.version + 1,
        updated_at=record.recorded_at,
    )
    expected = (
        ShadowClearingStateItem.pk.does_not_exist()
        if seen.version == 0
        else ShadowClearingStateItem.version == seen.version
    )
    tx.put("totals", state, expected)
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "record" in failed.labels:
            raise AlreadyExists(f"clearing {record.event_id} was recorded before") from None
        raise ShadowTotalsMoved(record.txn_id) from None


def record_live(record: CardClearingItem) -> None:
    """A live clearing's record (the posting is in the ledger); written once, a second write changes nothing."""
    try:
        record.save(condition=CardClearingItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


def clearings(tenant_id: str, *, since: str, until: str) -> Iterator[CardClearingItem]:
    """The tenant's clearing records recorded in [since, until] (RFC 3339), oldest first."""
    lower, upper = since, f"{until}~"
    return CardClearingItem.by_tenant.query(
        tenant_kind(tenant_id, CLEARING_KIND), CardClearingItem.sort_key.between(lower, upper)
    )


# ------------------------------------------------------------------------------------------------ sandbox faults
def fault_key(provider: str, operation: str, subject: str) -> str:
    return tenant_key("_sandbox", "fault", provider, operation, subject)


def plan_faults(provider: str, operation: str, subject: str, calls: int) -> None:
    """The next `calls` calls of `operation` for `subject` at the simulated provider fail (0: none)."""
    SandboxFaultItem(
        fault_key(provider, operation, subject), remaining=calls, expires_at=int(time.time()) + _FAULT_TTL_S
    ).save()


def take_fault(provider: str, operation: str, subject: str) -> bool:
    """Whether this call fails (one planned failure used up, atomically)."""
    try:
        SandboxFaultItem(fault_key(provider, operation, subject)).update(
            actions=[SandboxFaultItem.remaining.add(-1)],
            condition=SandboxFaultItem.remaining > 0,
        )
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True
