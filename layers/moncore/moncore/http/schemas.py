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


class CreateAccount(_Strict):
    user_id: Id
    currency: Currency


class CreateFunding(_Strict):
    account_id: Id
    amount_minor: AmountMinor
    currency: Currency


class CreateTransfer(_Strict):
    from_account_id: Id
    to_account_id: Id
    amount_minor: AmountMinor
    currency: Currency
    reference: Annotated[StrictStr, Field(max_length=140)] | None = None
    capture: Literal["auto", "manual"] = "auto"
    hold_expires_at: Instant | None = None


class CreateConversion(_Strict):
    """POST /v1/fx/conversions: sell `amount_minor` of `currency` (the source account's) into `to_account_id`."""

    account_id: Id
    to_account_id: Id
    amount_minor: AmountMinor
    currency: Currency


class Capture(_Strict):
    amount_minor: AmountMinor | None = Field(default=None, description="Default: the rest of the hold")


class Void(_Strict):
    amount_minor: AmountMinor | None = Field(default=None, description="Default: the rest of the hold")


class Reverse(_Strict):
    amount_minor: AmountMinor | None = Field(default=None, description="Default: what is not yet reversed")
    reason: Text


class CreateTenant(_Strict):
    name: Text
    jurisdictions: Annotated[list[Country], Field(min_length=1, max_length=50)]


class Empty(_Strict):
    pass
