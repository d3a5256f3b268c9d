"""FX provider port: a firm quote for converting one currency into another, and the sandbox adapter.

The provider advises the price; the kernel decides and records the conversion (amounts, rounding, legs). Which adapter
a tenant uses is tenant configuration (`fx_provider`), never the environment's name.

Errors: ValidationFailed (no rate for the pair, unknown provider), ProviderUnavailable (retryable: nothing was
posted, retry with the same idempotency key).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, Context, Decimal
from typing import Protocol

from moncore.domain.clock import rfc3339, utc_now
from moncore.domain.errors import ValidationFailed
from moncore.domain.fx import Quote, check_rate, decimal_text
from moncore.domain.ids import derived_id


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    tenant_id: str
    base_currency: str  # what the customer sells
    quote_currency: str  # what the customer buys
    amount_minor: int  # of the base currency
    idempotency_ref: str  # our transaction id: an idempotent provider answers a retried request with the same quote


class FxProvider(Protocol):
    name: str

    def quote(self, request: QuoteRequest) -> Quote: ...


# The sandbox's fixed mid rates: 1 unit of the first currency in units of the second (decimal strings, never floats).
# Other pairs are derived deterministically (see SandboxFx.rate), so the same pair always gets the same rate string.
SANDBOX_RATES: dict[tuple[str, str], str] = {
    ("EUR", "USD"): "1.0850",
    ("EUR", "GBP"): "0.8550",
    ("EUR", "CHF"): "0.9400",
    ("EUR", "JPY"): "162.35",
    ("EUR", "BHD"): "0.4090",
    ("USD", "JPY"): "149.50",
    ("USD", "BHD"): "0.3760",
}
SANDBOX_PIVOT = "EUR"
DERIVED_SIGNIFICANT_DIGITS = 10
SANDBOX_QUOTE_TTL = timedelta(seconds=30)
_DERIVE = Context(prec=40, rounding=ROUND_DOWN)


def _significant(value: Decimal) -> str:
    """`value` rounded down to DERIVED_SIGNIFICANT_DIGITS significant digits, as a plain decimal string."""
    exponent = value.adjusted() - DERIVED_SIGNIFICANT_DIGITS + 1
    return decimal_text(value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_DOWN, context=_DERIVE))


class SandboxFx:
    """Simulated provider with the fixed table SANDBOX_RATES. A pair is priced, in this order: from the table; as the
    inverse of a table pair (1/rate); as a cross through EUR (rate(from, EUR) x rate(EUR, to)). Derived rates are
    rounded down to 10 significant digits. Quote ids derive from the request, like a real provider's idempotent API."""

    name = "sandbox_fx"

    def rate(self, base: str, quote: str) -> str:
        direct = self._direct(base, quote)
        if direct is not None:
            return direct
        legs = (self._direct(base, SANDBOX_PIVOT), self._direct(SANDBOX_PIVOT, quote))
        if legs[0] is None or legs[1] is None:
            raise ValidationFailed(
                f"no FX rate for {base}/{quote}",
                errors=[{"loc": ["body", "to_account_id"], "msg": f"{base}/{quote} is not offered"}],
            )
        return _significant(_DERIVE.multiply(Decimal(legs[0]), Decimal(legs[1])))

    def quote(self, request: QuoteRequest) -> Quote:
        rate = self.rate(request.base_currency, request.quote_currency)
        quote_id = derived_id(
            "sbxfxq",
            request.tenant_id,
            request.idempotency_ref,
            request.base_currency,
            request.quote_currency,
            str(request.amount_minor),
        )
        expires_at = rfc3339(utc_now() + SANDBOX_QUOTE_TTL)
        return Quote(quote_id, self.name, request.base_currency, request.quote_currency, rate, expires_at)

    @staticmethod
    def _direct(base: str, quote: str) -> str | None:
        if base == quote:
            return "1"
        if (base, quote) in SANDBOX_RATES:
            return SANDBOX_RATES[(base, quote)]
        if (quote, base) in SANDBOX_RATES:
            return _significant(_DERIVE.divide(Decimal(1), check_rate(SANDBOX_RATES[(quote, base)])))
        return None


DEFAULT_FX_PROVIDER = SandboxFx.name
_ADAPTERS: dict[str, FxProvider] = {SandboxFx.name: SandboxFx()}


def fx_provider(name: str) -> FxProvider:
    """The adapter configured for a tenant."""
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ValidationFailed(f"FX provider '{name}' is not configured") from None
