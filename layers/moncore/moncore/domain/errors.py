"""Domain errors. Each carries its problem+json code and HTTP status, so the mapping lives in one place.

The HTTP layer (moncore.http.problems) turns any DomainError into an RFC 9457 problem; nothing else decides statuses.
`retryable` errors are never stored as an idempotent outcome: the client may retry with the same Idempotency-Key.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    status = 400
    title = "Bad Request"
    retryable = False

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422
    title = "Validation Error"


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not Found"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class CapabilityDisabled(DomainError):
    code = "capability_disabled"
    status = 403
    title = "Capability Disabled"


class FourEyesRequired(DomainError):
    """A change that needs two different admins (one requests, another approves) was approved by its requester."""

    code = "four_eyes_required"
    status = 403
    title = "Four Eyes Required"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = 409
    title = "Idempotency Key Reused"


class IdempotencyInProgress(DomainError):
    """A request with this key is still executing; retry later with the same key."""

    code = "idempotency_in_progress"
    status = 409
    title = "Request In Progress"
    retryable = True


class AlreadyExists(DomainError):
    code = "already_exists"
    status = 409
    title = "Already Exists"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    status = 422
    title = "Insufficient Funds"


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"
    status = 422
    title = "Currency Mismatch"


class AccountNotActive(DomainError):
    code = "account_frozen"
    status = 422
    title = "Account Not Active"


class CardNotActive(DomainError):
    """The card is frozen or closed (moncore.ledger.cards): its authorisations are declined."""

    code = "card_not_active"
    status = 422
    title = "Card Not Active"


class LimitExceeded(DomainError):
    """A KYC tier limit (per transaction, daily, monthly, balance cap) refused the movement; `errors` names which."""

    code = "limit_exceeded"
    status = 422
    title = "Limit Exceeded"


class ComplianceBlocked(DomainError):
    code = "compliance_blocked"
    status = 422
    title = "Compliance Blocked"


class GeoBlocked(ComplianceBlocked):
    """A country outside the tenant's jurisdictions or on the FATF call-for-action list (moncore.domain.geo)."""

    code = "geo_blocked"
    title = "Geo Blocked"


class InvalidSignature(DomainError):
    """A webhook whose signature does not verify (or is outside the timestamp tolerance): never acted on, stored as a
    rejected attempt (moncore.domain.webhooks)."""

    code = "invalid_signature"
    status = 401
    title = "Invalid Signature"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, errors=[{"loc": ["header", "MonCore-Signature"], "msg": reason, "reason": reason}])
        self.reason = reason


class WebhookNotConfigured(DomainError):
    """A signed delivery from a provider that has no active webhook secret: it cannot be verified, so nothing acts on
    it. Our configuration is missing, not the caller's input wrong: 503 and retryable, so the provider redelivers
    once an operator has added the secret (docs/kyc.md); an unsigned delivery is a 401 before this is asked."""

    code = "webhook_not_configured"
    status = 503
    title = "Webhook Not Configured"
    retryable = True


class InvalidStateTransition(DomainError):
    """The transaction's lifecycle does not allow this step now (DESIGN.md invariant 9)."""

    code = "invalid_state_transition"
    status = 409
    title = "Invalid State Transition"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413
    title = "Payload Too Large"


class ConcurrencyConflict(DomainError):
    """Contention outlasted our retries. Nothing was posted; the same key may be retried."""

    code = "concurrency_conflict"
    status = 409
    title = "Concurrent Update"
    retryable = True


class ProviderUnavailable(DomainError):
    code = "provider_unavailable"
    status = 503
    title = "Provider Unavailable"
    retryable = True


# ---- QR payments and FX quotes (docs/providers.md): one-shot offers that expire; nothing is posted on any of these.
class QrPayloadInvalid(DomainError):
    """An EMV QR payload that does not parse, fails its CRC, or is not the one issued for its payment request."""

    code = "qr_payload_invalid"
    status = 422
    title = "Invalid QR Payload"


class QrPaymentExpired(DomainError):
    code = "qr_payment_expired"
    status = 422
    title = "QR Payment Request Expired"


class QrPaymentAlreadyPaid(DomainError):
    code = "qr_payment_already_paid"
    status = 409
    title = "QR Payment Request Already Paid"


class QrPaymentMismatch(DomainError):
    """The payer confirmed another amount than the payment request's (the amount is always the request's)."""

    code = "qr_payment_mismatch"
    status = 422
    title = "QR Payment Mismatch"


class QuoteExpired(DomainError):
    code = "quote_expired"
    status = 422
    title = "Quote Expired"


class QuoteAlreadyUsed(DomainError):
    code = "quote_already_used"
    status = 409
    title = "Quote Already Used"


class QuoteMismatch(DomainError):
    """A conversion whose accounts, amount or currency differ from the quote it names."""

    code = "quote_mismatch"
    status = 422
    title = "Quote Mismatch"


class StatementMalformed(DomainError):
    """A bank statement file (camt.053/054, MT940) that cannot be read as one; `detail` names the place (line, element
    or tag) and what is wrong (docs/reconciliation.md). The file is kept; nothing of it is reconciled."""

    code = "statement_malformed"
    status = 422
    title = "Malformed Statement"


class NotSealed(DomainError):
    """The transaction exists but some of its legs are not in a signed block yet (docs/audit.md): the seal job runs
    every few minutes, so the same request succeeds later. 409 rather than 404: the transaction is found, its
    evidence is not ready."""

    code = "not_sealed"
    status = 409
    title = "Not Sealed Yet"
    retryable = True


class InvariantViolation(Exception):
    """A money invariant does not hold. Never caught to continue: it aborts the operation (raised, not asserted,
    because `assert` vanishes under -O)."""
