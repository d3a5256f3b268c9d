"""Ledger service: the posting pipeline of DESIGN.md section 6 for users, accounts, fundings and transfers.

Every creating operation takes a `RequestIdentity` (tenant, idempotency key, request hash): ids are derived from it,
so the same request can never create two things even after the idempotency record expired; a second attempt finds the
first one and answers it as a replay (or 409 when the payload differs).

Errors: NotFound, CurrencyMismatch, AccountNotActive, InsufficientFunds, AlreadyExists, CapabilityDisabled,
IdempotencyKeyReused, ConcurrencyConflict (retryable), ValidationFailed.
"""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.capabilities import Capability
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import AlreadyExists, IdempotencyKeyReused, InvariantViolation, NotFound, ValidationFailed
from moncore.domain.ids import derived_id
from moncore.domain.money import check_amount_minor, currency_exponent, format_minor, stored_minor
from moncore.domain.transactions import (
    AccountKind,
    AccountRef,
    Leg,
    Phase,
    Transaction,
    TxnStatus,
    TxnType,
    check_zero_sum,
    settled_pair,
)
from moncore.ledger.directory import DIRECTORY
from moncore.providers.open_banking import CollectionRequest, CollectionStatus, open_banking_provider
from moncore.store import accounts as account_store
from moncore.store import ledger as ledger_store
from moncore.store.models import AccountItem, LedgerItem, UserItem, plain_map
from moncore.tenancy.service import TenancyService

FUNDING_CLEARING = "funding_clearing"


class LedgerService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    # ---------------------------------------------------------------- users
    def create_user(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        external_ref: str,
        full_name: str,
        country: str,
        date_of_birth: str | None,
    ) -> Result:
        tenant_id = caller.require_tenant()
        user_id = derived_id("usr", tenant_id, request.idempotency_key)
        item = UserItem(
            f"{tenant_id}#{user_id}",
            id=user_id,
            tenant_id=tenant_id,
            external_ref=external_ref,
            full_name=full_name,
            country=country,
            date_of_birth=date_of_birth,
            tier="tier_0",
            status="ACTIVE",
            created_at=now_rfc3339(),
        )
        try:
            account_store.create_user(
                item,
                audit_event(
                    tenant_id=tenant_id,
                    action="user.created",
                    actor=caller.actor,
                    correlation_id=caller.correlation_id,
                    subject_id=user_id,
                    payload=_user_view(item),
                ),
            )
        except AlreadyExists:
            if account_store.user_id_for_external_ref(tenant_id, external_ref) == user_id:
                return Result(self.get_user(caller, user_id), replayed=True)  # same key, executed before
            raise
        return Result(_user_view(item))

    def get_user(self, caller: Caller, user_id: str) -> dict[str, Any]:
        item = account_store.find_user_item(caller.require_tenant(), user_id)
        if item is None:
            raise NotFound(f"user {user_id} not found")
        return _user_view(item)

    # ---------------------------------------------------------------- accounts
    def create_account(self, caller: Caller, request: RequestIdentity, *, user_id: str, currency: str) -> Result:
        tenant_id = caller.require_tenant()
        self._tenancy.require_capability(tenant_id, Capability.WALLETS)
        currency_exponent(currency)
        account_id = derived_id("acc", tenant_id, request.idempotency_key)
        item = AccountItem(
            f"{tenant_id}#{account_id}",
            id=account_id,
            tenant_id=tenant_id,
            user_id=user_id,
            currency=currency,
            kind=AccountKind.USER.value,
            status="ACTIVE",
            created_at=now_rfc3339(),
        )
        try:
            account_store.create_account(
                item,
                audit_event(
                    tenant_id=tenant_id,
                    action="account.created",
                    actor=caller.actor,
                    correlation_id=caller.correlation_id,
                    subject_id=account_id,
                    payload=_account_view(item),
                ),
            )
        except AlreadyExists:
            existing = account_store.find_account_item(tenant_id, account_id)
            if existing is None or existing.user_id != user_id or existing.currency != currency:
                raise
            return Result(self.get_account(caller, account_id), replayed=True)
        DIRECTORY.remember(tenant_id, account_store.to_ref(item))
        return Result(self.get_account(caller, account_id))

    def get_account(self, caller: Caller, account_id: str) -> dict[str, Any]:
        tenant_id = caller.require_tenant()
        item = account_store.find_account_item(tenant_id, account_id)
        if item is None:
            raise NotFound(f"account {account_id} not found")
        balance = account_store.find_balance_item(tenant_id, account_id)
        posted, pending, available = (
            stored_minor(balance.posted_minor),
            stored_minor(balance.pending_minor),
            stored_minor(balance.available_minor),
        )
        if pending == 0 and available != posted:  # both sides: a balance read back must still be coherent
            raise InvariantViolation(f"balance of {account_id} is inconsistent: {posted}/{pending}/{available}")
        view = _account_view(item)
        view["balance"] = {
            "posted_minor": posted,
            "pending_minor": pending,
            "available_minor": available,
            "posted": format_minor(posted, item.currency),
            "pending": format_minor(pending, item.currency),
            "available": format_minor(available, item.currency),
            "version": stored_minor(balance.version),
        }
        return view

    def list_entries(self, caller: Caller, account_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
        tenant_id = caller.require_tenant()
        if account_store.find_account_item(tenant_id, account_id) is None:
            raise NotFound(f"account {account_id} not found")
        entries, next_cursor = ledger_store.list_entries(tenant_id, account_id, limit=limit, cursor=cursor)
        return {
            "items": [
                {
                    "txn_id": e.txn_id,
                    "leg": e.leg_no,
                    "type": e.txn_type,
                    "account_id": e.account_id,
                    "currency": e.currency,
                    "amount_minor": e.amount_minor,
                    "amount": format_minor(e.amount_minor, e.currency),
                    "phase": e.phase,
                    "recorded_at": e.recorded_at,
                    "effective_at": e.effective_at,
                }
                for e in entries
            ],
            "next_cursor": next_cursor,
        }

    # ---------------------------------------------------------------- postings
    def fund(
        self, caller: Caller, request: RequestIdentity, *, account_id: str, amount_minor: int, currency: str
    ) -> Result:
        """Collect through the tenant's open-banking provider, then post clearing -> user account."""
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.FUNDINGS)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        (account,) = DIRECTORY.resolve(tenant_id, [account_id], currency)
        _require_user_account(account)
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        provider = open_banking_provider(self._tenancy.tenant_config(tenant_id).open_banking_provider)
        collected = provider.collect(CollectionRequest(tenant_id, account_id, amount_minor, currency, txn_id))
        if collected.status is not CollectionStatus.SETTLED:
            raise ValidationFailed(
                f"the provider answered {collected.status.value}; asynchronous fundings arrive later"
            )
        clearing = self._system_account(tenant_id, FUNDING_CLEARING, currency)
        txn = self._transaction(
            caller,
            request,
            txn_id,
            TxnType.FUNDING,
            settled_pair(clearing, account, amount_minor),
            amount_minor,
            currency,
            reference=None,
            gate=gate,
            provider=collected.provider,
            provider_ref=collected.provider_ref,
        )
        return self._post(caller, request, txn, guards=[f"provider_ref#{collected.provider}#{collected.provider_ref}"])

    def transfer(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        from_account_id: str,
        to_account_id: str,
        amount_minor: int,
        currency: str,
        reference: str | None,
    ) -> Result:
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.TRANSFERS)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        if from_account_id == to_account_id:
            raise ValidationFailed(
                "from_account_id and to_account_id must differ",
                errors=[{"loc": ["body", "to_account_id"], "msg": "same as from_account_id"}],
            )
        source, destination = DIRECTORY.resolve(tenant_id, [from_account_id, to_account_id], currency)
        _require_user_account(source)
        _require_user_account(destination)
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        txn = self._transaction(
            caller,
            request,
            txn_id,
            TxnType.TRANSFER,
            settled_pair(source, destination, amount_minor),
            amount_minor,
            currency,
            reference=reference,
            gate=gate,
        )
        return self._post(caller, request, txn, guards=[])

    def get_transaction(self, caller: Caller, txn_id: str) -> dict[str, Any]:
        items = ledger_store.load_transaction_items(caller.require_tenant(), txn_id)
        if not items:
            raise NotFound(f"transaction {txn_id} not found")
        return _transaction_view(items)

    # ---------------------------------------------------------------- internals
    def _transaction(
        self,
        caller: Caller,
        request: RequestIdentity,
        txn_id: str,
        txn_type: TxnType,
        legs: tuple[Leg, ...],
        amount_minor: int,
        currency: str,
        *,
        reference: str | None,
        gate: dict[str, str],
        provider: str | None = None,
        provider_ref: str | None = None,
    ) -> Transaction:
        return Transaction(
            id=txn_id,
            tenant_id=caller.require_tenant(),
            type=txn_type,
            status=TxnStatus.SETTLED,
            amount_minor=amount_minor,
            currency=currency,
            legs=legs,
            created_at=now_rfc3339(),
            request_hash=request.request_hash,
            correlation_id=caller.correlation_id,
            reference=reference,
            provider=provider,
            provider_ref=provider_ref,
            fingerprint=request.fingerprint,
            # The gating decision is recorded with the posting (invariant 5); compliance rules extend it.
            compliance={"decision": "allow", "checks": [gate], "decided_at": now_rfc3339()},
        )

    def _post(self, caller: Caller, request: RequestIdentity, txn: Transaction, *, guards: list[str]) -> Result:
        audit = audit_event(
            tenant_id=txn.tenant_id,
            action=f"{txn.type.value}.posted",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=txn.id,
            payload={
                "txn_id": txn.id,
                "type": txn.type.value,
                "amount_minor": txn.amount_minor,
                "currency": txn.currency,
                "status": txn.status.value,
                "request_hash": txn.request_hash,
                "legs": [[leg.account.account_id, leg.amount_minor, leg.phase.value] for leg in txn.legs],
            },
        )
        try:
            ledger_store.post(txn, guards=guards, audit=audit)
        except ledger_store.DuplicateTransaction:
            return self._replay_from_ledger(caller, request, txn.id)
        return Result(self.get_transaction(caller, txn.id))

    def _replay_from_ledger(self, caller: Caller, request: RequestIdentity, txn_id: str) -> Result:
        """The ledger already holds this key's transaction (the idempotency record expired or was lost)."""
        items = ledger_store.load_transaction_items(caller.require_tenant(), txn_id)
        header = next(i for i in items if i.sk == ledger_store.HEADER_SK)
        if header.request_hash != request.request_hash:
            stored = plain_map(header.fingerprint)
            differing = sorted(
                k for k in set(stored) | set(request.fingerprint) if stored.get(k) != request.fingerprint.get(k)
            )
            raise IdempotencyKeyReused(
                f"Idempotency-Key was used with a different request; differing fields: {', '.join(differing)}",
                errors=[{"loc": ["body", field], "msg": "differs from the original request"} for field in differing],
            )
        return Result(_transaction_view(items), replayed=True)

    def _system_account(self, tenant_id: str, purpose: str, currency: str) -> AccountRef:
        account_id = f"sys_{purpose}_{currency.lower()}"
        ref = AccountRef(account_id=account_id, currency=currency, kind=AccountKind.SYSTEM)
        try:
            return DIRECTORY.resolve(tenant_id, [account_id], currency)[0]
        except NotFound:
            account_store.ensure_system_account(
                AccountItem(
                    f"{tenant_id}#{account_id}",
                    id=account_id,
                    tenant_id=tenant_id,
                    user_id=None,
                    currency=currency,
                    kind=AccountKind.SYSTEM.value,
                    purpose=purpose,
                    status="ACTIVE",
                    created_at=now_rfc3339(),
                )
            )
            DIRECTORY.remember(tenant_id, ref)
            return ref


def _require_user_account(account: AccountRef) -> None:
    if account.kind is not AccountKind.USER:
        raise ValidationFailed(f"account {account.account_id} is a system account and cannot be used here")


def _user_view(item: UserItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "external_ref": item.external_ref,
        "full_name": item.full_name,
        "country": item.country,
        "date_of_birth": item.date_of_birth,
        "tier": item.tier,
        "status": item.status.lower(),
        "created_at": item.created_at,
    }


def _account_view(item: AccountItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "user_id": item.user_id,
        "currency": item.currency,
        "kind": item.kind,
        "status": item.status.lower(),
        "created_at": item.created_at,
    }


def _transaction_view(items: list[LedgerItem]) -> dict[str, Any]:
    header = next((i for i in items if i.sk == ledger_store.HEADER_SK), None)
    if header is None:
        raise InvariantViolation("transaction has legs but no header")
    leg_items = [i for i in items if i.sk.startswith("LEG#")]
    currency = header.currency or ""
    legs = [
        {
            "account_id": leg.account_id,
            "currency": leg.currency,
            "amount_minor": stored_minor(leg.leg_amount_minor),
            "amount": format_minor(stored_minor(leg.leg_amount_minor), leg.currency or ""),
            "phase": leg.phase,
        }
        for leg in leg_items
    ]
    # Invariant 1, checked again after the read: what we answer must balance per currency.
    check_zero_sum(
        [
            Leg(
                AccountRef(str(leg["account_id"]), str(leg["currency"]), AccountKind.USER),
                stored_minor(leg["amount_minor"]),
                Phase(str(leg["phase"])),
            )
            for leg in legs
        ]
    )
    amount_minor = stored_minor(header.amount_minor)
    view: dict[str, Any] = {
        "id": header.txn_id,
        "type": header.type,
        "status": header.status,
        "amount_minor": amount_minor,
        "amount": format_minor(amount_minor, currency),
        "currency": currency,
        "reference": header.reference,
        "legs": legs,
        "lifecycle": [{"status": header.status, "at": header.recorded_at}],
        "compliance": header.compliance or {},
        "created_at": header.recorded_at,
        "correlation_id": header.correlation_id,
    }
    if header.provider:
        view["provider"] = {"name": header.provider, "reference": header.provider_ref}
    return view
