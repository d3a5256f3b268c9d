"""QR payments (docs/providers.md, "QR payments"): a merchant's payment request with an EMVCo merchant-presented
payload, paid once by a payer before it expires.

- A merchant account is a user account created with a `merchant` profile (name, city, category code); the merchant's
  country is its user's.
- `create`: a payment request for an amount in the merchant account's currency, stored in the Offers table with its
  dynamic EMV payload (moncore.domain.qr) and its expiry (default 15 minutes, at most 7 days).
- `pay`: the payer presents the payload (or the request id). The payload must be byte-for-byte the one issued: its
  CRC catches accidents, the comparison catches edits (a CRC can be recomputed by anyone), and the amount paid is
  always the stored request's. The payment is a transaction of type qr_payment from the payer to the merchant
  account, through the usual compliance (freezes, tier limits and caps, screening, AML scored as a transfer; a
  review holds the funds like a transfer's). The guard `qr#<request id>` in the payment's own TransactWriteItems
  makes a request payable once, whatever the concurrency; a request past its expiry posts nothing.
- `get`: OPEN, PAID (by its transaction), EXPIRED; IN_REVIEW / REFUSED while or after an AML review holds or
  returns the payment.

Errors: CapabilityDisabled, NotFound, ValidationFailed, CurrencyMismatch, AccountNotActive, InsufficientFunds,
LimitExceeded, ComplianceBlocked, QrPayloadInvalid, QrPaymentExpired, QrPaymentAlreadyPaid, QrPaymentMismatch,
IdempotencyKeyReused, ConcurrencyConflict (retryable).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from moncore.compliance.movements import MovementChecks
from moncore.domain.aml import Operation
from moncore.domain.audit import audit_event
from moncore.domain.capabilities import Capability
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import (
    AccountNotActive,
    AlreadyExists,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvariantViolation,
    NotFound,
    QrPayloadInvalid,
    QrPaymentAlreadyPaid,
    QrPaymentExpired,
    QrPaymentMismatch,
    ValidationFailed,
)
from moncore.domain.ids import derived_id
from moncore.domain.money import check_amount_minor, currency_exponent, format_minor, stored_minor
from moncore.domain.qr import PaymentRequestCode, encode_payment_request, parse_payload
from moncore.domain.transactions import AccountKind, EventKind, TxnStatus, TxnType, hold_pair, settled_pair
from moncore.ledger import views
from moncore.ledger.directory import DIRECTORY
from moncore.ledger.service import (
    create,
    decide_movement,
    first_event,
    future_instant,
    new_transaction,
    replay_from_ledger,
    require_user_account,
)
from moncore.store import accounts as account_store
from moncore.store import ledger as ledger_store
from moncore.store import offers as offer_store
from moncore.store.models import QrPaymentItem, plain_map
from moncore.tenancy.service import TenancyService

DEFAULT_QR_TTL = timedelta(minutes=15)  # a till or an invoice screen: long enough to scan and confirm
MAX_QR_TTL = timedelta(days=7)


def qr_guard(request_id: str) -> str:
    """The guard that makes a payment request payable once (written by the paying transaction's posting)."""
    return f"qr#{request_id}"


class QrService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._checks = MovementChecks(self._tenancy)

    # ---------------------------------------------------------------- payment requests
    def create(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        merchant_account_id: str,
        amount_minor: int,
        currency: str,
        reference: str | None = None,
        expires_at: str | None = None,
    ) -> Result:
        """A payment request of `amount_minor` `currency` to the merchant account, with its EMV payload."""
        tenant_id = caller.require_tenant()
        self._tenancy.require_capability(tenant_id, Capability.QR_PAYMENTS, caller)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        request_id = derived_id("qr", tenant_id, request.idempotency_key)
        try:
            expiry = _expiry(expires_at)
        except ValidationFailed:
            if offer_store.find_qr_payment(tenant_id, request_id) is None:
                raise
            return Result(self._existing(caller, request, request_id), replayed=True)  # created before it passed
        account = account_store.find_account_item(tenant_id, merchant_account_id)
        if account is None:
            raise NotFound(f"account {merchant_account_id} not found")
        if account.kind != AccountKind.USER.value or not account.merchant or not account.user_id:
            raise ValidationFailed(
                f"account {merchant_account_id} is not a merchant account",
                errors=[{"loc": ["body", "merchant_account_id"], "msg": "not a merchant account"}],
            )
        if account.currency != currency:
            raise CurrencyMismatch(f"account {merchant_account_id} holds {account.currency}, not {currency}")
        user = account_store.find_user_item(tenant_id, account.user_id)
        if account.status != "ACTIVE" or user is None or user.status != "ACTIVE":
            raise AccountNotActive(f"merchant account {merchant_account_id} cannot receive payments now")
        merchant = {
            "name": str(account.merchant["name"]),
            "city": str(account.merchant["city"]),
            "category_code": str(account.merchant["category_code"]),
            "country": user.country,
        }
        payload = encode_payment_request(
            PaymentRequestCode(
                request_id=request_id,
                amount_minor=amount_minor,
                currency=currency,
                merchant_name=merchant["name"],
                merchant_city=merchant["city"],
                merchant_category_code=merchant["category_code"],
                country=merchant["country"],
                reference=reference,
            )
        )
        item = QrPaymentItem(
            offer_store.qr_payment_key(tenant_id, request_id),
            id=request_id,
            tenant_id=tenant_id,
            merchant_account_id=merchant_account_id,
            merchant_user_id=account.user_id,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
            payload=payload,
            merchant=merchant,
            expires_at=expiry,
            created_at=now_rfc3339(),
            created_by=caller.actor,
            correlation_id=caller.correlation_id,
            request_hash=request.request_hash,
            fingerprint=request.fingerprint,
        )
        view = qr_view(item, status="OPEN", txn_id=None)
        audit = audit_event(
            tenant_id=tenant_id,
            action="qr_payment.created",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=request_id,
            payload=view,
        )
        try:
            offer_store.create_offer(item, audit)
        except AlreadyExists:
            return Result(self._existing(caller, request, request_id), replayed=True)
        return Result(view)

    def get(self, caller: Caller, request_id: str) -> dict[str, Any]:
        tenant_id = caller.require_tenant()
        item = offer_store.find_qr_payment(tenant_id, request_id)
        if item is None:
            raise NotFound(f"QR payment request {request_id} not found")
        owner = offer_store.guard_owner(tenant_id, qr_guard(request_id))
        if owner is None:
            return qr_view(item, status="EXPIRED" if item.expires_at <= now_rfc3339() else "OPEN", txn_id=None)
        stored = ledger_store.load_transaction(tenant_id, owner)
        if stored is None:
            raise InvariantViolation(f"QR payment request {request_id} is guarded by missing transaction {owner}")
        status = {TxnStatus.AUTHORIZED: "IN_REVIEW", TxnStatus.REVERSED: "REFUSED"}.get(
            views.txn_state(stored).status, "PAID"
        )
        return qr_view(item, status=status, txn_id=owner, paid_at=stored.header.recorded_at)

    def _existing(self, caller: Caller, request: RequestIdentity, request_id: str) -> dict[str, Any]:
        item = offer_store.find_qr_payment(caller.require_tenant(), request_id)
        if item is None:
            raise InvariantViolation(f"QR payment request {request_id} exists but cannot be read back")
        if item.request_hash != request.request_hash:
            stored_fingerprint = plain_map(item.fingerprint)
            differing = sorted(
                k
                for k in set(stored_fingerprint) | set(request.fingerprint)
                if stored_fingerprint.get(k) != request.fingerprint.get(k)
            )
            raise IdempotencyKeyReused(
                f"Idempotency-Key was used with a different request; differing fields: {', '.join(differing)}",
                errors=[{"loc": ["body", field], "msg": "differs from the original request"} for field in differing],
            )
        return self.get(caller, request_id)

    # ---------------------------------------------------------------- payments
    def pay(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        from_account_id: str,
        payload: str | None = None,
        qr_payment_id: str | None = None,
        amount_minor: int | None = None,
        currency: str | None = None,
    ) -> Result:
        """Pay the request named by `payload` (or `qr_payment_id`) from `from_account_id`. `amount_minor` and
        `currency`, when sent, are what the payer confirmed: they must be the request's."""
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.QR_PAYMENTS, caller)
        if (payload is None) == (qr_payment_id is None):
            raise ValidationFailed(
                "send exactly one of payload and qr_payment_id",
                errors=[{"loc": ["body", "payload"], "msg": "exactly one of payload and qr_payment_id"}],
            )
        if payload is not None:
            qr_payment_id = parse_payload(payload).request_id()
            if qr_payment_id is None:
                raise QrPayloadInvalid(
                    "the payload is a valid EMV QR code but not a MonCore payment request",
                    errors=[{"loc": ["body", "payload"], "msg": "no MonCore merchant template", "object": "26"}],
                )
        if qr_payment_id is None:
            raise InvariantViolation("a payment names its request")
        item = offer_store.find_qr_payment(tenant_id, qr_payment_id)
        if item is None:
            raise NotFound(f"QR payment request {qr_payment_id} not found")
        if payload is not None and payload != item.payload:
            raise QrPayloadInvalid(
                f"the payload is not the one issued for payment request {item.id}",
                errors=[{"loc": ["body", "payload"], "msg": "differs from the issued payload", "object": "payload"}],
            )
        request_minor = stored_minor(item.amount_minor)
        differing = [
            name
            for name, confirmed, requested in (
                ("amount_minor", amount_minor, request_minor),
                ("currency", currency, item.currency),
            )
            if confirmed is not None and confirmed != requested
        ]
        if differing:
            raise QrPaymentMismatch(
                f"payment request {item.id} is for {format_minor(request_minor, item.currency)} {item.currency}",
                errors=[{"loc": ["body", name], "msg": "differs from the payment request"} for name in differing],
            )
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        guard = qr_guard(item.id)
        owner = offer_store.guard_owner(tenant_id, guard)  # a read to answer early; the posting's guard enforces
        if owner == txn_id:
            return replay_from_ledger(caller, request, txn_id)  # this key paid it (its idempotency record expired)
        if owner is not None:
            raise QrPaymentAlreadyPaid(f"payment request {item.id} was already paid by transaction {owner}")
        if item.expires_at <= now_rfc3339():
            raise QrPaymentExpired(f"payment request {item.id} expired at {item.expires_at}; nothing was posted")
        if from_account_id == item.merchant_account_id:
            raise ValidationFailed(
                "a merchant account cannot pay its own payment request",
                errors=[{"loc": ["body", "from_account_id"], "msg": "is the merchant account"}],
            )
        payer, merchant = DIRECTORY.resolve(tenant_id, [from_account_id, item.merchant_account_id], item.currency)
        require_user_account(payer)
        decision = decide_movement(
            self._checks,
            caller,
            txn_id,
            debit=payer,
            debit_minor=request_minor,
            credit=merchant,
            credit_minor=request_minor,
            aml=Operation.TRANSFER,  # a QR payment moves money from one user to another: scored as a transfer
        )
        if decision is None:
            return replay_from_ledger(caller, request, txn_id)
        txn = new_transaction(
            caller,
            request,
            txn_id,
            TxnType.QR_PAYMENT,
            request_minor,
            item.currency,
            gate=gate,
            reference=item.id,
            capture="review" if decision.review else "auto",
            checks=decision.checks,
            decision=decision,
        )
        if decision.review:  # held for the case like a transfer under review; the request is used either way
            legs, kind = hold_pair(payer, merchant, request_minor), EventKind.AUTHORIZED
        else:
            legs, kind = settled_pair(payer, merchant, request_minor), EventKind.SETTLED
        event = first_event(caller, request, txn, kind, legs)
        try:
            return create(caller, request, txn, event, guards=(guard,), decision=decision)
        except ledger_store.DuplicateGuard:
            owner = offer_store.guard_owner(tenant_id, guard)
            raise QrPaymentAlreadyPaid(f"payment request {item.id} was already paid by transaction {owner}") from None


def _expiry(requested: str | None) -> str:
    """The request's expiry: the requested instant (normalised; in the future, at most 7 days away) or 15 minutes."""
    return future_instant(requested, field="expires_at", default=DEFAULT_QR_TTL, maximum=MAX_QR_TTL)


def qr_view(item: QrPaymentItem, *, status: str, txn_id: str | None, paid_at: str | None = None) -> dict[str, Any]:
    amount_minor = stored_minor(item.amount_minor)
    return {
        "id": item.id,
        "status": status,
        "merchant_account_id": item.merchant_account_id,
        "amount_minor": amount_minor,
        "amount": format_minor(amount_minor, item.currency),
        "currency": item.currency,
        "reference": item.reference,
        "merchant": dict(item.merchant),
        "payload": item.payload,
        "expires_at": item.expires_at,
        "created_at": item.created_at,
        "txn_id": txn_id,
        "paid_at": paid_at,
    }
