"""FX conversions between two accounts of one user in two currencies (see docs/fx.md).

One transaction (type fx_conversion), created SETTLED with four legs through the tenant's FX position accounts, so it
sums to zero in each currency (invariant 1):

    user source (ccy1) -x | sys_fx_position_<ccy1> +x | sys_fx_position_<ccy2> -y | user target (ccy2) +y

x is what the customer sells; y = x * rate rounded down to the target minor unit (moncore.domain.fx). Every leg and
the header carry the FX attribution (rate string, quote id, provider, both amounts and currencies, rounding rule and
remainder). The quote comes from the tenant's configured FX provider; its id derives from the transaction id, so a
retry asks for (and records) the same quote, and a guard makes one quote back at most one conversion.

Errors: CapabilityDisabled, ValidationFailed (same account or currency, accounts of different users, system account,
amount too small, no rate), CurrencyMismatch (`currency` is not the source account's), NotFound, AccountNotActive,
InsufficientFunds, IdempotencyKeyReused, ProviderUnavailable and ConcurrencyConflict (both retryable).
"""

from __future__ import annotations

from moncore.compliance.movements import MovementChecks
from moncore.domain.aml import Operation
from moncore.domain.capabilities import Capability
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import InvariantViolation, ProviderUnavailable, ValidationFailed
from moncore.domain.fx import conversion_legs, plan_conversion
from moncore.domain.ids import derived_id
from moncore.domain.money import check_amount_minor, currency_exponent
from moncore.domain.transactions import EventKind, TxnType
from moncore.ledger.directory import DIRECTORY
from moncore.ledger.service import (
    create,
    decide_movement,
    first_event,
    new_transaction,
    replay_from_ledger,
    require_user_account,
    system_account,
)
from moncore.providers.fx import QuoteRequest, fx_provider
from moncore.store import ledger as ledger_store
from moncore.tenancy.service import TenancyService

FX_POSITION = "fx_position"


class FxService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._checks = MovementChecks(self._tenancy)

    def convert(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        account_id: str,
        to_account_id: str,
        amount_minor: int,
        currency: str,
    ) -> Result:
        """Sell `amount_minor` of `currency` from `account_id`, credit the converted amount to `to_account_id`."""
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.FX, caller)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        if account_id == to_account_id:
            raise ValidationFailed(
                "account_id and to_account_id must differ",
                errors=[{"loc": ["body", "to_account_id"], "msg": "same as account_id"}],
            )
        (source,) = DIRECTORY.resolve(tenant_id, [account_id], currency)  # CurrencyMismatch unless it holds `currency`
        target = DIRECTORY.lookup(tenant_id, to_account_id)
        require_user_account(source)
        require_user_account(target)
        if source.user_id != target.user_id:
            raise ValidationFailed(
                "an FX conversion moves money between two accounts of the same user",
                errors=[{"loc": ["body", "to_account_id"], "msg": "belongs to another user"}],
            )
        if target.currency == source.currency:
            raise ValidationFailed(
                f"both accounts hold {currency}; use a transfer",
                errors=[{"loc": ["body", "to_account_id"], "msg": f"holds {currency} too"}],
            )
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        try:
            provider = fx_provider(self._tenancy.tenant_config(tenant_id).fx_provider)
            quote = provider.quote(QuoteRequest(tenant_id, source.currency, target.currency, amount_minor, txn_id))
            conversion = plan_conversion(quote, amount_minor, now=now_rfc3339())
        except (ValidationFailed, ProviderUnavailable):
            # Converted before (its idempotency record expired) at a price the provider no longer gives: the ledger
            # holds the answer, and the conversion is never priced twice.
            if ledger_store.load_transaction(tenant_id, txn_id) is None:
                raise
            return replay_from_ledger(caller, request, txn_id)
        if (quote.base_currency, quote.quote_currency) != (source.currency, target.currency):
            raise InvariantViolation(
                f"provider {quote.provider} quoted {quote.base_currency}/{quote.quote_currency}, "
                f"not {source.currency}/{target.currency}"
            )
        # What the customer sells counts against its limits in the source currency; the target account is capped.
        decision = decide_movement(
            self._checks,
            caller,
            txn_id,
            debit=source,
            debit_minor=amount_minor,
            credit=target,
            credit_minor=conversion.target_amount_minor,
            aml=Operation.FX_CONVERSION,
            can_hold=False,  # a conversion is priced by a quote that expires: it cannot wait for a case
        )
        if decision is None:
            return replay_from_ledger(caller, request, txn_id)
        legs = conversion_legs(
            conversion,
            source=source,
            target=target,
            source_position=system_account(tenant_id, FX_POSITION, source.currency),
            target_position=system_account(tenant_id, FX_POSITION, target.currency),
        )
        txn = new_transaction(
            caller,
            request,
            txn_id,
            TxnType.FX_CONVERSION,
            amount_minor,
            source.currency,
            gate=gate,
            provider=quote.provider,
            provider_ref=quote.quote_id,
            fx=conversion.attribution(),
            checks=decision.checks,
            decision=decision,
        )
        event = first_event(caller, request, txn, EventKind.SETTLED, legs)
        guards = (f"fx_quote#{quote.provider}#{quote.quote_id}",)
        return create(caller, request, txn, event, guards=guards, decision=decision)
