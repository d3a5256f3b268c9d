"""FX conversion arithmetic, quotes and legs: pure, no I/O (see docs/fx.md).

Rates are decimal STRINGS ("162.35"), parsed into `decimal.Decimal` here and nowhere else; a float is refused before it
can touch an amount (binary floats cannot hold 1.085 exactly, and a rate that silently changed in its 17th digit
would change converted amounts). Amounts stay integer minor units on both sides; the Decimal product exists only
inside `exact_target_minor` and is computed in a context that traps any rounding, so the one rounding that happens is
the documented one.

Rounding rule (ROUNDING_RULE = "round_down"): the converted amount is rounded toward zero to the target currency's
minor unit. The customer never receives minor units they did not pay for; the sub-minor remainder (less than one
target minor unit) stays in the tenant's FX position and is recorded in the attribution of every leg
(`exact_target_minor`, `remainder_target_minor`). A conversion that would credit 0 minor units is refused (422).

A rate is the price of ONE major unit of the source currency in major units of the target currency
(EUR->JPY "162.35": 1 EUR buys 162.35 JPY), the usual base/quote market convention; ISO 4217 exponents turn it into
a minor-unit factor: target_minor = source_minor * rate * 10^(exp(target) - exp(source)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import (
    ROUND_DOWN,
    Clamped,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from typing import Any

from moncore.domain.errors import InvariantViolation, ProviderUnavailable, ValidationFailed
from moncore.domain.money import MAX_AMOUNT_MINOR, check_amount_minor, currency_exponent
from moncore.domain.transactions import AccountKind, AccountRef, Leg, Phase, check_zero_sum

ROUNDING_RULE = "round_down"  # toward zero, to the target currency's minor unit

MAX_RATE_INTEGER_DIGITS = 12
MAX_RATE_FRACTION_DIGITS = 18
# Plain positional notation only: no sign, exponent, whitespace, NaN/Infinity, leading zeros or bare points, so one
# rate has one spelling and what the attribution shows is exactly what was multiplied.
_RATE_RE = re.compile(rf"^(0|[1-9][0-9]{{0,{MAX_RATE_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,{MAX_RATE_FRACTION_DIGITS}}})?$")
# 16 digits of amount x 30 digits of rate fit in 46; 64 digits of precision make every product exact, and the traps
# turn any rounding the context would do on its own into an error instead of a silent change.
_EXACT = Context(
    prec=64,
    rounding=ROUND_DOWN,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact, Rounded, Clamped],
)


def check_rate(rate: object, *, field: str = "rate") -> Decimal:
    """The rate as an exact Decimal. A non-string (a float above all) is a programming error: InvariantViolation.
    A string that is not a plain positive decimal within the digit bounds: ValidationFailed."""
    if not isinstance(rate, str):
        raise InvariantViolation(f"an FX rate must be a decimal string, never {type(rate).__name__}")
    if not _RATE_RE.match(rate):
        raise ValidationFailed(
            f"FX rate {rate[:40]!r} is not a plain positive decimal (at most {MAX_RATE_INTEGER_DIGITS} integer and "
            f"{MAX_RATE_FRACTION_DIGITS} fraction digits)",
            errors=[{"loc": [field], "msg": "invalid rate", "input": rate[:40]}],
        )
    value = Decimal(rate)
    if value <= 0:
        raise ValidationFailed(
            "FX rate must be positive", errors=[{"loc": [field], "msg": "must be positive", "input": rate}]
        )
    return value


def _check_pair(from_ccy: str, to_ccy: str) -> tuple[int, int]:
    from_exp, to_exp = currency_exponent(from_ccy), currency_exponent(to_ccy)
    if from_ccy == to_ccy:
        raise ValidationFailed(
            f"a conversion needs two different currencies, got {from_ccy} twice",
            errors=[{"loc": ["body", "currency"], "msg": "same currency on both sides"}],
        )
    return from_exp, to_exp


def exact_target_minor(amount_minor: int, from_ccy: str, to_ccy: str, rate: str) -> Decimal:
    """The unrounded value of `amount_minor` of `from_ccy` in minor units of `to_ccy` (exact, never rounded)."""
    check_amount_minor(amount_minor)
    from_exp, to_exp = _check_pair(from_ccy, to_ccy)
    factor = check_rate(rate)
    try:
        with localcontext(_EXACT) as ctx:
            return ctx.scaleb(ctx.multiply(Decimal(amount_minor), factor), Decimal(to_exp - from_exp))
    except DecimalException as error:  # unreachable within the bounds above; never rounded silently
        raise InvariantViolation(f"FX arithmetic was not exact: {error!r}") from None


def convert_minor(amount_minor: int, from_ccy: str, to_ccy: str, rate: str) -> int:
    """`amount_minor` of `from_ccy` in minor units of `to_ccy` at `rate`, rounded down (ROUNDING_RULE).

    convert_minor(10_000, "EUR", "JPY", "162.35") == 16_235        100.00 EUR -> 16235 JPY (exact)
    convert_minor(1_000, "JPY", "EUR", "0.006159531875") == 615     1000 JPY -> 6.15 EUR (6.1595... rounded down)
    ValidationFailed ("amount too small to convert") when the result would be 0 minor units.
    """
    target = int(exact_target_minor(amount_minor, from_ccy, to_ccy, rate).to_integral_value(rounding=ROUND_DOWN))
    if target <= 0:
        raise ValidationFailed(
            f"amount too small to convert: {amount_minor} minor units of {from_ccy} are worth less than one minor "
            f"unit of {to_ccy}",
            errors=[{"loc": ["body", "amount_minor"], "msg": "amount too small to convert", "input": amount_minor}],
        )
    return target


def decimal_text(value: Decimal) -> str:
    """Plain positional text of an exact Decimal, without trailing zeros ("1623.5", "0", "0.000125")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@dataclass(frozen=True, slots=True)
class Quote:
    """A provider's firm price for converting `base_currency` into `quote_currency` until `expires_at`.

    `rate` is a decimal string (see the module docstring for its direction); `quote_id` is the provider's reference,
    derived from our request by idempotent providers so a retried call gets the same quote back."""

    quote_id: str
    provider: str
    base_currency: str
    quote_currency: str
    rate: str
    expires_at: str  # RFC 3339 UTC (moncore.domain.clock format), compared as a string

    def __post_init__(self) -> None:
        if not self.quote_id or not self.provider:
            raise InvariantViolation("a quote needs a quote id and a provider")
        _check_pair(self.base_currency, self.quote_currency)
        check_rate(self.rate)


@dataclass(frozen=True, slots=True)
class Conversion:
    """A planned conversion: what leaves the source, what arrives at the target, and what rounding kept."""

    quote: Quote
    source_amount_minor: int
    target_amount_minor: int
    exact_target_minor: str  # the unrounded target amount in target minor units, as a decimal string
    remainder_target_minor: str  # exact - credited, in [0, 1) target minor units: stays in the FX position

    @property
    def source_currency(self) -> str:
        return self.quote.base_currency

    @property
    def target_currency(self) -> str:
        return self.quote.quote_currency

    def attribution(self) -> dict[str, Any]:
        """The FX attribution stored on the header and on every leg (strings and ints only: no float can appear)."""
        return {
            "rate": self.quote.rate,
            "pair": f"{self.source_currency}/{self.target_currency}",
            "quote_id": self.quote.quote_id,
            "provider": self.quote.provider,
            "quote_expires_at": self.quote.expires_at,
            "source_amount_minor": self.source_amount_minor,
            "source_currency": self.source_currency,
            "target_amount_minor": self.target_amount_minor,
            "target_currency": self.target_currency,
            "rounding": ROUNDING_RULE,
            "exact_target_minor": self.exact_target_minor,
            "remainder_target_minor": self.remainder_target_minor,
        }


def plan_conversion(quote: Quote, amount_minor: int, *, now: str) -> Conversion:
    """Convert `amount_minor` of the quote's base currency at the quote's rate. Refuses an expired quote (retryable:
    nothing was posted), an amount too small to credit anything, and a result above MAX_AMOUNT_MINOR (which keeps
    every stored amount exact for JSON clients)."""
    if quote.expires_at <= now:
        raise ProviderUnavailable(f"FX quote {quote.quote_id} expired before use; nothing was posted, retry")
    exact = exact_target_minor(amount_minor, quote.base_currency, quote.quote_currency, quote.rate)
    target = convert_minor(amount_minor, quote.base_currency, quote.quote_currency, quote.rate)
    if target > MAX_AMOUNT_MINOR:
        raise ValidationFailed(
            f"the converted amount exceeds {MAX_AMOUNT_MINOR} minor units of {quote.quote_currency}",
            errors=[{"loc": ["body", "amount_minor"], "msg": "converted amount too large", "input": amount_minor}],
        )
    with localcontext(_EXACT) as ctx:
        remainder = ctx.subtract(exact, Decimal(target))
    if not Decimal(0) <= remainder < Decimal(1):
        raise InvariantViolation(f"rounding remainder {remainder} is outside [0, 1)")
    return Conversion(quote, amount_minor, target, decimal_text(exact), decimal_text(remainder))


def conversion_legs(
    conversion: Conversion,
    *,
    source: AccountRef,
    target: AccountRef,
    source_position: AccountRef,
    target_position: AccountRef,
) -> tuple[Leg, ...]:
    """The four SETTLED legs of a conversion, each carrying the attribution; zero-sum per currency:

    source (user, ccy1) -x | source_position (system, ccy1) +x | target_position (system, ccy2) -y | target (user) +y
    """
    expected = (
        (source, conversion.source_currency, AccountKind.USER),
        (source_position, conversion.source_currency, AccountKind.SYSTEM),
        (target_position, conversion.target_currency, AccountKind.SYSTEM),
        (target, conversion.target_currency, AccountKind.USER),
    )
    for account, currency, kind in expected:
        if account.currency != currency or account.kind is not kind:
            raise InvariantViolation(f"account {account.account_id} cannot take the {currency} {kind.value} leg")
    fx = conversion.attribution()
    x, y = conversion.source_amount_minor, conversion.target_amount_minor
    legs = (
        Leg(source, -x, Phase.SETTLED, fx=fx),
        Leg(source_position, x, Phase.SETTLED, fx=fx),
        Leg(target_position, -y, Phase.SETTLED, fx=fx),
        Leg(target, y, Phase.SETTLED, fx=fx),
    )
    check_zero_sum(legs)
    return legs
