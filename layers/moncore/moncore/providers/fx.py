"""FX provider port: a firm quote for converting one currency into another, its execution, and the sandbox adapter.

The provider prices and executes; the kernel decides and records the conversion (amounts, rounding, legs). The port:
- `quote(request)`: a firm price with an expiry; idempotent (the quote id derives from our reference);
- `execute(request)`: book the trade at a quote's price within its validity; idempotent per quote (executing one
  quote again answers the same trade), its reference is the transaction's provider reference that reconciliation
  matches with the provider's statement.
Which adapter a tenant uses is tenant configuration (`fx_provider`), never the environment's name.

The sandbox adapter prices deterministically (SANDBOX_RATES) and misbehaves on demand, like the KYC sandbox: by a
marker `fx_<scenario>` in the customer's reference (the user's external_ref; docs/providers.md, "FX provider"):
`fx_quote_down` the quote service is down, `fx_execution_fails` the execution fails, `fx_execution_late` the
execution arrives after the provider's cut-off (refused as expired), `fx_short_quote` quotes last one second.

Errors: ValidationFailed (no rate for the pair, unknown provider), ProviderUnavailable (retryable: nothing was
executed or posted, retry with the same idempotency key), QuoteExpired (the provider refused to execute an expired
quote: nothing was executed or posted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, Context, Decimal
from typing import Protocol

from moncore.domain.clock import now_rfc3339, rfc3339, utc_now
from moncore.domain.errors import InvariantViolation, ProviderUnavailable, QuoteExpired, ValidationFailed
from moncore.domain.fx import Quote, check_rate, decimal_text
from moncore.domain.ids import derived_id
from moncore.providers.plugins import Adapters


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    tenant_id: str
    base_currency: str  # what the customer sells
    quote_currency: str  # what the customer buys
    amount_minor: int  # of the base currency
    idempotency_ref: str  # our transaction id: an idempotent provider answers a retried request with the same quote
    customer_ref: str = ""  # the partner's reference of the customer (user external_ref), as providers ask for one


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    tenant_id: str
    quote: Quote  # the firm quote being executed (its provider, pair, rate and expiry)
    amount_minor: int  # what the customer sells, in the quote's base currency
    target_amount_minor: int  # what the kernel credits, in the quote currency (rounded down, moncore.domain.fx)
    idempotency_ref: str  # our transaction id
    customer_ref: str = ""


@dataclass(frozen=True, slots=True)
class Execution:
    provider: str
    provider_ref: str  # the provider's trade reference: on the transaction header and every leg, and on its statement
    quote_id: str
    executed_at: str  # RFC 3339 UTC


class FxProvider(Protocol):
    name: str

    def quote(self, request: QuoteRequest) -> Quote: ...

    def execute(self, request: ExecutionRequest) -> Execution: ...


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
# On-demand behaviour of the sandbox: `fx_<scenario>` in the customer reference (module docstring).
SANDBOX_QUOTE_DOWN = "quote_down"
SANDBOX_EXECUTION_FAILS = "execution_fails"
SANDBOX_EXECUTION_LATE = "execution_late"
SANDBOX_SHORT_QUOTE = "short_quote"
SANDBOX_SHORT_QUOTE_TTL = timedelta(seconds=1)


def sandbox_scenario(customer_ref: str) -> str | None:
    for name in (SANDBOX_QUOTE_DOWN, SANDBOX_EXECUTION_FAILS, SANDBOX_EXECUTION_LATE, SANDBOX_SHORT_QUOTE):
        if f"fx_{name}" in customer_ref:
            return name
    return None


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
        scenario = sandbox_scenario(request.customer_ref)
        if scenario == SANDBOX_QUOTE_DOWN:
            raise ProviderUnavailable(f"{self.name}: the quote service is unavailable (sandbox scenario); retry")
        rate = self.rate(request.base_currency, request.quote_currency)
        quote_id = derived_id(
            "sbxfxq",
            request.tenant_id,
            request.idempotency_ref,
            request.base_currency,
            request.quote_currency,
            str(request.amount_minor),
        )
        ttl = SANDBOX_SHORT_QUOTE_TTL if scenario == SANDBOX_SHORT_QUOTE else SANDBOX_QUOTE_TTL
        expires_at = rfc3339(utc_now() + ttl)
        return Quote(quote_id, self.name, request.base_currency, request.quote_currency, rate, expires_at)

    def execute(self, request: ExecutionRequest) -> Execution:
        """Book the trade of a quote. Like a real provider: refuses a quote past its expiry by its own clock, and
        answers the same trade for the same quote (the trade id derives from the quote id), so a retried or
        repeated execution never books a second trade."""
        quote = request.quote
        if quote.provider != self.name:
            raise InvariantViolation(f"{self.name} cannot execute a quote of {quote.provider}")
        scenario = sandbox_scenario(request.customer_ref)
        if scenario == SANDBOX_EXECUTION_FAILS:
            raise ProviderUnavailable(f"{self.name}: the execution failed, nothing was booked (sandbox scenario)")
        now = now_rfc3339()
        if scenario == SANDBOX_EXECUTION_LATE or quote.expires_at <= now:
            raise QuoteExpired(
                f"{self.name} refused to execute quote {quote.quote_id}: it expired at {quote.expires_at} before the "
                "execution reached the provider; nothing was executed or posted"
            )
        trade_id = derived_id("sbxfxt", request.tenant_id, quote.quote_id)
        return Execution(self.name, trade_id, quote.quote_id, now)

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
ADAPTERS: Adapters[FxProvider] = Adapters("FX provider", "fx_provider", [(SandboxFx.name, SandboxFx())])


def register(adapter: FxProvider) -> None:
    """Make an adapter selectable as a tenant's `fx_provider` (providers/plugins.py loads the modules that call
    this). FX providers answer synchronously: no webhook route."""
    ADAPTERS.register(adapter.name, adapter)


def fx_provider(name: str) -> FxProvider:
    """The adapter configured for a tenant (a stored quote names the provider that gave it)."""
    return ADAPTERS.get(name)
