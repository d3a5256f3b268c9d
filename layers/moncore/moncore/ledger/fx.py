"""FX quotes and conversions between two accounts of one user in two currencies (see docs/fx.md).

One transaction (type fx_conversion), created SETTLED with four legs through the tenant's FX position accounts, so it
sums to zero in each currency (invariant 1):

    user source (ccy1) -x | sys_fx_position_<ccy1> +x | sys_fx_position_<ccy2> -y | user target (ccy2) +y

x is what the customer sells; y = x * rate rounded down to the target minor unit (moncore.domain.fx). Every leg and
the header carry the FX attribution (rate string, quote id, provider, both amounts and currencies, rounding rule and
remainder); the header's provider reference is the provider's trade reference.

Two ways in:
- `quote` then `convert(quote_id=...)`: the partner shows the customer a firm price (stored in the Offers table with
  its expiry) and executes it within its validity, exactly once: the guard `fx_quote#<provider>#<quote id>` is
  written by the conversion's own TransactWriteItems;
- `convert` without a quote: priced and executed at once; the quote id derives from the transaction id, so a retry
  asks for (and records) the same quote.
Either way the provider executes the trade after the compliance decision and before the posting (as a funding is
collected before it is posted), with our transaction id as its idempotency reference.

Errors: CapabilityDisabled, ValidationFailed (same account or currency, accounts of different users, system account,
amount too small, no rate), CurrencyMismatch (`currency` is not the source account's), NotFound, AccountNotActive,
InsufficientFunds, IdempotencyKeyReused, QuoteExpired, QuoteAlreadyUsed, QuoteMismatch, ProviderUnavailable and
ConcurrencyConflict (both retryable).
"""

from __future__ import annotations

from typing import Any

from moncore.compliance.movements import MovementChecks
from moncore.domain.aml import Operation
from moncore.domain.audit import audit_event
from moncore.domain.capabilities import Capability
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import (
    AlreadyExists,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvariantViolation,
    LimitExceeded,
    NotFound,
    ProviderUnavailable,
    QuoteAlreadyUsed,
    QuoteExpired,
    QuoteMismatch,
    ValidationFailed,
)
from moncore.domain.fx import Conversion, Quote, conversion_legs, plan_conversion
from moncore.domain.ids import derived_id
from moncore.domain.money import check_amount_minor, currency_exponent, format_minor, stored_minor
from moncore.domain.transactions import AccountRef, EventKind, TxnType
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
from moncore.providers.calls import provider_call
from moncore.providers.fx import ExecutionRequest, FxProvider, QuoteRequest, fx_provider
from moncore.store import accounts as account_store
from moncore.store import balances as balance_store
from moncore.store import ledger as ledger_store
from moncore.store import offers as offer_store
from moncore.store.models import FxQuoteItem, plain_map
from moncore.tenancy.service import TenancyService

FX_POSITION = "fx_position"


def quote_guard(provider: str, provider_quote_id: str) -> str:
    """The guard that makes one quote back at most one conversion (written by the conversion's posting)."""
    return f"fx_quote#{provider}#{provider_quote_id}"


class FxService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._checks = MovementChecks(self._tenancy)

    # ---------------------------------------------------------------- quotes
    def quote(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        account_id: str,
        to_account_id: str,
        amount_minor: int,
        currency: str,
    ) -> Result:
        """A firm quote from the tenant's provider for selling `amount_minor` of `currency` from `account_id` into
        `to_account_id`, stored so a conversion can execute it (once) before it expires."""
        tenant_id = caller.require_tenant()
        self._tenancy.require_capability(tenant_id, Capability.FX, caller)
        source, target = self._accounts(tenant_id, account_id, to_account_id, amount_minor, currency)
        quote_id = derived_id("fxq", tenant_id, request.idempotency_key)
        provider = fx_provider(self._tenancy.tenant_config(tenant_id).fx_provider)
        customer_ref = _customer_ref(tenant_id, source)
        with provider_call(caller, provider=provider.name, call="quote", subject_id=quote_id):
            quote = provider.quote(
                QuoteRequest(tenant_id, source.currency, target.currency, amount_minor, quote_id, customer_ref)
            )
        _check_pair(quote, source, target)
        conversion = plan_conversion(quote, amount_minor, now=now_rfc3339())
        item = FxQuoteItem(
            offer_store.fx_quote_key(tenant_id, quote_id),
            id=quote_id,
            tenant_id=tenant_id,
            account_id=account_id,
            to_account_id=to_account_id,
            amount_minor=amount_minor,
            currency=source.currency,
            target_currency=target.currency,
            target_amount_minor=conversion.target_amount_minor,
            rate=quote.rate,
            provider=quote.provider,
            provider_quote_id=quote.quote_id,
            expires_at=quote.expires_at,
            created_at=now_rfc3339(),
            created_by=caller.actor,
            correlation_id=caller.correlation_id,
            request_hash=request.request_hash,
            fingerprint=request.fingerprint,
        )
        view = quote_view(item, status="OPEN", txn_id=None)
        audit = audit_event(
            tenant_id=tenant_id,
            action="fx_quote.created",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=quote_id,
            payload=view,
        )
        try:
            offer_store.create_offer(item, audit)
        except AlreadyExists:
            return Result(self._existing_quote(caller, request, quote_id), replayed=True)
        return Result(view)

    def get_quote(self, caller: Caller, quote_id: str) -> dict[str, Any]:
        tenant_id = caller.require_tenant()
        item = offer_store.find_fx_quote(tenant_id, quote_id)
        if item is None:
            raise NotFound(f"FX quote {quote_id} not found")
        owner = offer_store.guard_owner(tenant_id, quote_guard(item.provider, item.provider_quote_id))
        if owner is not None:
            return quote_view(item, status="USED", txn_id=owner)
        return quote_view(item, status="EXPIRED" if item.expires_at <= now_rfc3339() else "OPEN", txn_id=None)

    def _existing_quote(self, caller: Caller, request: RequestIdentity, quote_id: str) -> dict[str, Any]:
        """The quote this idempotency key created before (its idempotency record expired), or 409 for another body."""
        item = offer_store.find_fx_quote(caller.require_tenant(), quote_id)
        if item is None:
            raise InvariantViolation(f"FX quote {quote_id} exists but cannot be read back")
        if item.request_hash != request.request_hash:
            raise _key_reused(plain_map(item.fingerprint), request)
        return self.get_quote(caller, quote_id)

    # ---------------------------------------------------------------- conversions
    def convert(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        account_id: str,
        to_account_id: str,
        amount_minor: int,
        currency: str,
        quote_id: str | None = None,
    ) -> Result:
        """Sell `amount_minor` of `currency` from `account_id`, credit the converted amount to `to_account_id`: at
        the price of the stored quote `quote_id` (within its validity, once), or at a price asked for now."""
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.FX, caller)
        if quote_id is not None:
            return self._convert_quoted(
                caller,
                request,
                gate,
                quote_id,
                account_id=account_id,
                to_account_id=to_account_id,
                amount_minor=amount_minor,
                currency=currency,
            )
        source, target = self._accounts(tenant_id, account_id, to_account_id, amount_minor, currency)
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        try:
            provider = fx_provider(self._tenancy.tenant_config(tenant_id).fx_provider)
            customer_ref = _customer_ref(tenant_id, source)
            with provider_call(caller, provider=provider.name, call="quote", subject_id=txn_id):
                quote = provider.quote(
                    QuoteRequest(tenant_id, source.currency, target.currency, amount_minor, txn_id, customer_ref)
                )
            conversion = plan_conversion(quote, amount_minor, now=now_rfc3339())
        except (ValidationFailed, ProviderUnavailable):
            # Converted before (its idempotency record expired) at a price the provider no longer gives: the ledger
            # holds the answer, and the conversion is never priced twice.
            if ledger_store.load_transaction(tenant_id, txn_id) is None:
                raise
            return replay_from_ledger(caller, request, txn_id)
        _check_pair(quote, source, target)
        return self._execute_and_post(
            caller, request, gate, txn_id, provider, conversion, source, target, customer_ref=customer_ref
        )

    def _convert_quoted(
        self,
        caller: Caller,
        request: RequestIdentity,
        gate: dict[str, str],
        quote_id: str,
        *,
        account_id: str,
        to_account_id: str,
        amount_minor: int,
        currency: str,
    ) -> Result:
        """Execute a stored quote: the request must match it, it must be unused and within its validity."""
        tenant_id = caller.require_tenant()
        stored = offer_store.find_fx_quote(tenant_id, quote_id)
        if stored is None:
            raise NotFound(f"FX quote {quote_id} not found")
        asked = {"account_id": account_id, "to_account_id": to_account_id, "amount_minor": amount_minor}
        quoted = {
            "account_id": stored.account_id,
            "to_account_id": stored.to_account_id,
            "amount_minor": stored_minor(stored.amount_minor),
        }
        differing = sorted(name for name in asked if asked[name] != quoted[name])
        if currency != stored.currency:
            differing.append("currency")
        if differing:
            raise QuoteMismatch(
                f"the conversion differs from FX quote {quote_id} in: {', '.join(differing)}",
                errors=[{"loc": ["body", name], "msg": "differs from the quote"} for name in differing],
            )
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        guard = quote_guard(stored.provider, stored.provider_quote_id)
        owner = offer_store.guard_owner(tenant_id, guard)  # a read to answer early; the posting's guard enforces
        if owner == txn_id:
            return replay_from_ledger(caller, request, txn_id)  # this key used it (its idempotency record expired)
        if owner is not None:
            raise QuoteAlreadyUsed(f"FX quote {quote_id} was already used by transaction {owner}")
        now = now_rfc3339()
        if stored.expires_at <= now:
            raise QuoteExpired(f"FX quote {quote_id} expired at {stored.expires_at}; nothing was posted")
        source, target = self._accounts(tenant_id, account_id, to_account_id, amount_minor, currency)
        quote = Quote(
            stored.provider_quote_id,
            stored.provider,
            stored.currency,
            stored.target_currency,
            stored.rate,
            stored.expires_at,
        )
        _check_pair(quote, source, target)
        conversion = plan_conversion(quote, amount_minor, now=now)
        if conversion.target_amount_minor != stored_minor(stored.target_amount_minor):
            raise InvariantViolation(f"FX quote {quote_id} converts to another amount than it was quoted for")
        # The provider that gave the quote executes it, even if the tenant's configuration changed since.
        provider = fx_provider(stored.provider)
        customer_ref = _customer_ref(tenant_id, source)
        return self._execute_and_post(
            caller, request, gate, txn_id, provider, conversion, source, target, customer_ref=customer_ref
        )

    def _execute_and_post(
        self,
        caller: Caller,
        request: RequestIdentity,
        gate: dict[str, str],
        txn_id: str,
        provider: FxProvider,
        conversion: Conversion,
        source: AccountRef,
        target: AccountRef,
        *,
        customer_ref: str,
    ) -> Result:
        """Compliance, then the provider's execution, then one posting with the quote's guard."""
        tenant_id = caller.require_tenant()
        quote = conversion.quote
        # What the customer sells counts against its limits in the source currency; the target account is capped.
        decision = decide_movement(
            self._checks,
            caller,
            txn_id,
            debit=source,
            debit_minor=conversion.source_amount_minor,
            credit=target,
            credit_minor=conversion.target_amount_minor,
            aml=Operation.FX_CONVERSION,
            can_hold=False,  # a conversion is priced by a quote that expires: it cannot wait for a case
        )
        if decision is None:
            return replay_from_ledger(caller, request, txn_id)
        try:
            # Courtesy reads before the provider books a trade the posting would refuse; the posting's conditions
            # stay the enforcement (a concurrent debit can still win: reconciliation then shows the trade unposted).
            self._checks.precheck_caps(caller, decision, subject_id=txn_id)
            available = balance_store.read_balance(tenant_id, source)[0].available_minor
            if available < conversion.source_amount_minor:
                raise InsufficientFunds(f"account {source.account_id} has insufficient available funds")
            with provider_call(caller, provider=provider.name, call="execute", subject_id=txn_id):
                execution = provider.execute(
                    ExecutionRequest(
                        tenant_id,
                        quote,
                        conversion.source_amount_minor,
                        conversion.target_amount_minor,
                        txn_id,
                        customer_ref,
                    )
                )
        except (LimitExceeded, InsufficientFunds, ProviderUnavailable, QuoteExpired):
            if ledger_store.load_transaction(tenant_id, txn_id) is None:
                raise
            return replay_from_ledger(caller, request, txn_id)  # this conversion is what moved the balance
        if execution.provider != quote.provider or execution.quote_id != quote.quote_id:
            raise InvariantViolation(f"provider {execution.provider} executed {execution.quote_id}, not the quote")
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
            conversion.source_amount_minor,
            source.currency,
            gate=gate,
            provider=execution.provider,
            provider_ref=execution.provider_ref,
            fx=conversion.attribution(),
            checks=decision.checks,
            decision=decision,
        )
        event = first_event(caller, request, txn, EventKind.SETTLED, legs)
        guard = quote_guard(quote.provider, quote.quote_id)
        guards = (guard, f"provider_ref#{execution.provider}#{execution.provider_ref}")
        try:
            return create(caller, request, txn, event, guards=guards, decision=decision)
        except ledger_store.DuplicateGuard:
            owner = offer_store.guard_owner(tenant_id, guard)
            raise QuoteAlreadyUsed(f"FX quote {quote.quote_id} was already used by transaction {owner}") from None

    # ---------------------------------------------------------------- shared checks
    @staticmethod
    def _accounts(
        tenant_id: str, account_id: str, to_account_id: str, amount_minor: int, currency: str
    ) -> tuple[AccountRef, AccountRef]:
        """The source and target of a conversion: two accounts of one user in two currencies, `currency` being the
        source's."""
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
        return source, target


def _customer_ref(tenant_id: str, source: AccountRef) -> str:
    """The customer's reference for the provider: the partner's external_ref of the converting user."""
    user = account_store.find_user_item(tenant_id, source.user_id or "")
    if user is None:
        raise NotFound(f"the user of account {source.account_id} was not found")
    return user.external_ref


def _check_pair(quote: Quote, source: AccountRef, target: AccountRef) -> None:
    if (quote.base_currency, quote.quote_currency) != (source.currency, target.currency):
        raise InvariantViolation(
            f"provider {quote.provider} quoted {quote.base_currency}/{quote.quote_currency}, "
            f"not {source.currency}/{target.currency}"
        )


def _key_reused(stored_fingerprint: dict[str, str], request: RequestIdentity) -> IdempotencyKeyReused:
    differing = sorted(
        k
        for k in set(stored_fingerprint) | set(request.fingerprint)
        if stored_fingerprint.get(k) != request.fingerprint.get(k)
    )
    return IdempotencyKeyReused(
        f"Idempotency-Key was used with a different request; differing fields: {', '.join(differing)}",
        errors=[{"loc": ["body", field], "msg": "differs from the original request"} for field in differing],
    )


def quote_view(item: FxQuoteItem, *, status: str, txn_id: str | None) -> dict[str, Any]:
    """What the API answers for an FX quote. status: OPEN (usable until expires_at), USED (by txn_id), EXPIRED."""
    amount_minor = stored_minor(item.amount_minor)
    target_minor = stored_minor(item.target_amount_minor)
    return {
        "id": item.id,
        "status": status,
        "account_id": item.account_id,
        "to_account_id": item.to_account_id,
        "pair": f"{item.currency}/{item.target_currency}",
        "rate": item.rate,
        "source_amount_minor": amount_minor,
        "source_amount": format_minor(amount_minor, item.currency),
        "source_currency": item.currency,
        "target_amount_minor": target_minor,
        "target_amount": format_minor(target_minor, item.target_currency),
        "target_currency": item.target_currency,
        "expires_at": item.expires_at,
        "provider": {"name": item.provider, "quote_id": item.provider_quote_id},
        "txn_id": txn_id,
        "created_at": item.created_at,
    }
