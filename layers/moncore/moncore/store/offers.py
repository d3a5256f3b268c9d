"""Offers table: QR payment requests and FX quotes (docs/providers.md). Each is written once, with its audit event, in
one TransactWriteItems, and never changed. Whether an offer was used is answered by its guard (Guards table), which
only the posting that used it writes: the offer and its use can never disagree, and no status is ever updated.

Errors: AlreadyExists (an offer with this id exists: the same idempotency key was used before).
"""

from __future__ import annotations

from moncore.domain.audit import AuditEvent
from moncore.domain.errors import AlreadyExists
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import FxQuoteItem, GuardItem, QrPaymentItem, tenant_key
from moncore.store.transact import ConditionFailed, TxBuilder

QR_KIND = "qr"
FX_QUOTE_KIND = "fxq"


def qr_payment_key(tenant_id: str, request_id: str) -> str:
    return tenant_key(tenant_id, QR_KIND, request_id)


def fx_quote_key(tenant_id: str, quote_id: str) -> str:
    return tenant_key(tenant_id, FX_QUOTE_KIND, quote_id)


def create_offer(item: QrPaymentItem | FxQuoteItem, audit: AuditEvent) -> None:
    """Write a new offer and its audit event atomically; AlreadyExists when the id is taken."""
    tx = TxBuilder()
    tx.put("offer", item, type(item).pk.does_not_exist())
    tx.put("audit", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        if "offer" in failed.labels:
            raise AlreadyExists(f"offer {item.pk} already exists") from None
        raise


def find_qr_payment(tenant_id: str, request_id: str) -> QrPaymentItem | None:
    try:
        return QrPaymentItem.get(qr_payment_key(tenant_id, request_id), consistent_read=True)
    except QrPaymentItem.DoesNotExist:
        return None


def find_fx_quote(tenant_id: str, quote_id: str) -> FxQuoteItem | None:
    try:
        return FxQuoteItem.get(fx_quote_key(tenant_id, quote_id), consistent_read=True)
    except FxQuoteItem.DoesNotExist:
        return None


def guard_owner(tenant_id: str, guard: str) -> str | None:
    """The id of the transaction that wrote `guard` (store.ledger.Posting.guards), or None while it is unused."""
    try:
        return GuardItem.get(tenant_key(tenant_id, guard), consistent_read=True).owner_id
    except GuardItem.DoesNotExist:
        return None
