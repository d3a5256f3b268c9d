"""Request bodies of the public API (API.md). Strict: no coercion (a float or a string is not an amount), unknown fields
are rejected, strings are bounded. Money fields are checked again in the domain (both sides)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from moncore.domain.money import MAX_AMOUNT_MINOR, is_currency


def _currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError("must be an ISO 4217 currency code with a minor unit, e.g. EUR")
    return code


def _country(code: str) -> str:
    import pycountry  # noqa: PLC0415 - loaded on first use only: most requests never carry a country

    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, e.g. FR")
    return code


def _past_date(value: str) -> str:
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD") from None
    if len(value) != 10 or parsed > dt.date.today() or parsed.year < 1900:
        raise ValueError("must be a real past date YYYY-MM-DD")
    return value


Id = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
Currency = Annotated[StrictStr, Field(min_length=3, max_length=3), AfterValidator(_currency)]
Country = Annotated[StrictStr, Field(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$"), AfterValidator(_country)]
AmountMinor = Annotated[
    StrictInt, Field(gt=0, le=MAX_AMOUNT_MINOR, description="Positive integer, ISO 4217 minor units")
]
Text = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Instant = Annotated[
    StrictStr,
    Field(min_length=20, max_length=40, description="RFC 3339 timestamp with offset, e.g. 2026-01-31T23:59:59Z"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class CreateUser(_Strict):
    external_ref: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    full_name: Text
    country: Country
    date_of_birth: Annotated[StrictStr, AfterValidator(_past_date)] | None = None


QrText = Annotated[StrictStr, Field(min_length=1, pattern=r"^[\x20-\x7e]+$", description="Printable ASCII")]


class MerchantProfile(_Strict):
    """What a merchant account's EMV QR payment requests show the payer (docs/providers.md, "QR payments"); the
    merchant's country is its user's."""

    name: Annotated[QrText, Field(max_length=25)]
    city: Annotated[QrText, Field(max_length=15)]
    category_code: Annotated[StrictStr, Field(pattern=r"^[0-9]{4}$", description="ISO 18245 merchant category code")]


class CreateAccount(_Strict):
    user_id: Id
    currency: Currency
    merchant: MerchantProfile | None = Field(
        default=None, description="Makes this a merchant account, which can create QR payment requests"
    )


class CreateFunding(_Strict):
    account_id: Id
    amount_minor: AmountMinor
    currency: Currency


class Beneficiary(_Strict):
    """The external account a withdrawal pays: checked (IBAN format and check digits, country, sanctions screening)
    before anything is held."""

    name: Text
    iban: Annotated[
        StrictStr,
        Field(min_length=15, max_length=42, pattern=r"^[A-Za-z0-9 ]+$", description="IBAN, spaces allowed"),
    ]


class CreateWithdrawal(_Strict):
    account_id: Id
    amount_minor: AmountMinor
    currency: Currency
    beneficiary: Beneficiary


class CreateTransfer(_Strict):
    from_account_id: Id
    to_account_id: Id
    amount_minor: AmountMinor
    currency: Currency
    reference: Annotated[StrictStr, Field(max_length=140)] | None = None
    capture: Literal["auto", "manual"] = "auto"
    hold_expires_at: Instant | None = None


class CreateFxQuote(_Strict):
    """POST /v1/fx/quotes: a firm price for selling `amount_minor` of `currency` from `account_id` into
    `to_account_id`, valid until its `expires_at` (docs/fx.md)."""

    account_id: Id
    to_account_id: Id
    amount_minor: AmountMinor
    currency: Currency


class CreateConversion(_Strict):
    """POST /v1/fx/conversions: sell `amount_minor` of `currency` (the source account's) into `to_account_id`; with
    `quote_id`, at that quote's price (the body must match it; once, before it expires)."""

    account_id: Id
    to_account_id: Id
    amount_minor: AmountMinor
    currency: Currency
    quote_id: Id | None = None


class CreateQrPayment(_Strict):
    """POST /v1/qr-payments: a merchant's payment request with an EMVCo merchant-presented payload."""

    merchant_account_id: Id
    amount_minor: AmountMinor
    currency: Currency
    reference: Annotated[QrText, Field(max_length=25)] | None = None
    expires_at: Instant | None = Field(default=None, description="Default: 15 minutes; at most 7 days away")


class PayQrPayment(_Strict):
    """POST /v1/qr-payments/pay: pay a payment request named by its scanned `payload` or by `qr_payment_id`.
    `amount_minor` / `currency`, when sent, are what the payer confirmed and must be the request's."""

    from_account_id: Id
    payload: Annotated[StrictStr, Field(min_length=1, max_length=512)] | None = None
    qr_payment_id: Id | None = None
    amount_minor: AmountMinor | None = None
    currency: Currency | None = None


class IssueCard(_Strict):
    """POST /v1/cards: a card on one of the user's accounts, issued by the tenant's card issuer (docs/providers.md)."""

    user_id: Id
    account_id: Id


class CardStatusChange(_Strict):
    """POST /v1/cards/{id}/freeze | unfreeze | close."""

    reason: Text | None = None


class Capture(_Strict):
    amount_minor: AmountMinor | None = Field(default=None, description="Default: the rest of the hold")


class Void(_Strict):
    amount_minor: AmountMinor | None = Field(default=None, description="Default: the rest of the hold")


class Reverse(_Strict):
    amount_minor: AmountMinor | None = Field(default=None, description="Default: what is not yet reversed")
    reason: Text


class ScreeningCheck(_Strict):
    """POST /v1/screening/checks: a name to screen against the sanctions lists; country and date of birth, when
    given, raise or lower the scores of entries that list them (docs/screening.md)."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"\S", description="Not only spaces")]
    country: Country | None = None
    date_of_birth: Annotated[StrictStr, AfterValidator(_past_date)] | None = None


LimitMinor = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_MINOR, description="Minor units; null: no limit")]


class TierLimitsBody(_Strict):
    """One tier's limits in one currency (moncore.domain.limits): all four are required, null means no limit."""

    per_transaction_minor: LimitMinor | None
    daily_minor: LimitMinor | None
    monthly_minor: LimitMinor | None
    balance_cap_minor: LimitMinor | None


TierName = Literal["tier_0", "tier_1", "tier_2"]
CurrencyLimits = Annotated[dict[Currency, TierLimitsBody], Field(max_length=50)]


class CreateTenant(_Strict):
    name: Text
    jurisdictions: Annotated[list[Country], Field(min_length=1, max_length=50)]
    tier_limits: dict[TierName, CurrencyLimits] | None = Field(
        default=None, description="Overrides of the default tier limits per tier and currency (docs/limits-and-geo.md)"
    )
    open_banking_provider: Id | None = Field(
        default=None, description="Open banking adapter (docs/providers.md); default: the stack's default provider"
    )
    fx_provider: Id | None = Field(default=None, description="FX adapter (docs/providers.md); default: sandbox_fx")
    kyc_provider: Id | None = Field(default=None, description="KYC/KYB adapter; default: sandbox_kyc")
    screening_provider: Id | None = Field(
        default=None, description="Screening adapter; default: moncore_lists (the kernel's own engine)"
    )
    card_issuer: Id | None = Field(default=None, description="Card issuer adapter (set at creation only)")
    card_processor: Id | None = Field(default=None, description="Card processor adapter (set at creation only)")


class ChangeTenantConfig(_Strict):
    """PATCH /admin/v1/tenants/{id}/config: only the fields sent change. `tier_limits` replaces every override
    (null or {}: back to the defaults); `jurisdictions` replaces the list."""

    tier_limits: dict[TierName, CurrencyLimits] | None = Field(
        default=None, description="All overrides per tier and currency (docs/limits-and-geo.md); null: defaults"
    )
    jurisdictions: Annotated[list[Country], Field(min_length=1, max_length=50)] | None = None
    open_banking_provider: Id | None = Field(
        default=None, description="The open banking adapter that executes fundings and withdrawals (docs/providers.md)"
    )
    fx_provider: Id | None = Field(default=None, description="The FX adapter that quotes and executes conversions")
    kyc_provider: Id | None = Field(default=None, description="The KYC/KYB adapter that verifies users")
    screening_provider: Id | None = Field(default=None, description="The screening adapter users are screened by")


class DowngradeTier(_Strict):
    """POST /admin/v1/users/{tenant_id}/{user_id}/tier: lower a user's tier (it rises only through a KYC check)."""

    tier: Literal["tier_0", "tier_1"]
    reason: Text


class StartKycCheck(_Strict):
    """POST /v1/users/{id}/kyc-checks: verify the user for a tier with the tenant's KYC provider (docs/kyc.md)."""

    level: Literal["tier_1", "tier_2"]


class Empty(_Strict):
    pass


CapabilityName = Literal[
    "wallets",
    "transfers",
    "fundings",
    "qr_payments",
    "fx",
    "card_funding",
    "card_issuing",
    "card_clearing",
    "withdrawals",
    "settlement_finalization",
]  # = moncore.domain.capabilities.Capability (tests/unit/test_capabilities.py keeps the two equal)
ContractRef = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]( ?[\x21-\x7e])*$")]


class ChangeCapability(_Strict):
    """POST /admin/v1/tenants/{id}/capabilities. `live` needs contract_ref and a second admin's approval."""

    capability: CapabilityName
    mode: Literal["disabled", "shadow", "live"]
    contract_ref: ContractRef | None = Field(default=None, description="Required when mode is live")


class Decision(_Strict):
    reason: Text | None = None


class StatusReason(_Strict):
    """POST .../freeze and .../unfreeze."""

    reason: Text


ListedName = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"\S", description="Not only spaces")]


class AddWatchlistEntry(_Strict):
    """POST /admin/v1/tenants/{id}/watchlist: a person or organisation the tenant screens its users and payees against
    (docs/screening.md), with the reason it is listed."""

    name: ListedName
    aliases: Annotated[list[ListedName], Field(max_length=20)] = Field(default_factory=list)
    party: Literal["individual", "entity"] = "individual"
    country: Country | None = Field(default=None, description="Nationality (or country of an organisation)")
    date_of_birth: Annotated[StrictStr, AfterValidator(_past_date)] | None = None
    reason: Text


class OpenCase(_Strict):
    tenant_id: Id
    kind: Literal["manual", "aml_review", "screening_hit"] = "manual"
    reason: Text
    subject_user_id: Id | None = None
    txn_id: Id | None = None


class AssignCase(_Strict):
    assignee: Text


class CaseNote(_Strict):
    text: Annotated[StrictStr, Field(min_length=1, max_length=4000)]


class EscalateCase(_Strict):
    reason: Text


class DecideCase(_Strict):
    outcome: Literal["no_action", "released", "reversed", "frozen", "reported"]
    reason: Text


def _object_key(key: str) -> str:
    if ".." in key or "//" in key:
        raise ValueError("must be a plain key: no '..' and no empty path segment")
    return key


StatementKey = Annotated[
    StrictStr,
    Field(
        min_length=12,
        max_length=512,
        pattern=r"^statements/[A-Za-z0-9_\-./]+$",
        description="Key of a statement uploaded to the evidence bucket, under statements/",
    ),
    AfterValidator(_object_key),
]


class StartReconciliation(_Strict):
    """POST /admin/v1/reconciliations (docs/reconciliation.md "Runs"): reconcile a tenant's day against the provider's
    bank statement, uploaded to the evidence bucket (statement_s3_key) or delivered by the provider's adapter."""

    tenant_id: Id
    provider: Id
    statement_s3_key: StatementKey | None = None
    date: Annotated[StrictStr, Field(min_length=10, max_length=10, description="The booking day, YYYY-MM-DD (UTC)")]


class ProposeAdjustment(_Strict):
    """POST /admin/v1/reconciliations/{id}/exceptions/{exception_id}/adjustments: book the exception's difference
    (the bank's amount minus the ledger's) once a second admin approves."""

    reason: Text


ExportKind = Literal["ledger", "exposure", "compliance_timeline", "audit"]


class CreateExport(_Strict):
    """POST /v1/exports (docs/audit.md "Exports and evidence bundles"): one kind of the tenant's records over
    [from, to) by recorded time, built asynchronously into a signed evidence bundle."""

    kind: ExportKind
    from_: Instant = Field(alias="from")
    to: Instant


class CreateEvidenceBundle(_Strict):
    """POST /admin/v1/evidence-bundles: a regulator bundle of a tenant's records of the given kinds over [from, to)."""

    tenant_id: Id
    kinds: Annotated[list[ExportKind], Field(min_length=1, max_length=4)]
    from_: Instant = Field(alias="from")
    to: Instant
