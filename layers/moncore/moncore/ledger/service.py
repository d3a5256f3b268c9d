"""Ledger service: the posting pipeline of DESIGN.md section 6 for users, accounts, fundings and transfers, and the
helpers every ledger service shares (new transaction, first event, create-or-replay, system accounts).

Every creating operation takes a `RequestIdentity` (tenant, idempotency key, request hash): ids are derived from it,
so the same request can never create two things even after the idempotency record expired; a second attempt finds the
first one and answers it as a replay (or 409 when the payload differs).

Errors: NotFound, CurrencyMismatch, AccountNotActive, InsufficientFunds, AlreadyExists, CapabilityDisabled,
IdempotencyKeyReused, ConcurrencyConflict (retryable), ValidationFailed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pynamodb.models import Model

from moncore.compliance import aml as aml_rules
from moncore.compliance.freezes import refuse_frozen
from moncore.compliance.movements import MovementChecks, MovementDecision
from moncore.compliance.refusals import audit_refusal
from moncore.compliance.screening.gate import default_gate as default_screening_gate
from moncore.compliance.screening.policy import ScreeningStatus
from moncore.config import settings
from moncore.domain.aml import Operation
from moncore.domain.audit import AuditEvent, audit_event
from moncore.domain.capabilities import Capability
from moncore.domain.clock import now_rfc3339, parse_instant, rfc3339, utc_now
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import (
    AlreadyExists,
    ComplianceBlocked,
    GeoBlocked,
    IdempotencyKeyReused,
    InvariantViolation,
    LimitExceeded,
    NotFound,
    ValidationFailed,
)
from moncore.domain.geo import check_user_country
from moncore.domain.ids import derived_id
from moncore.domain.lifecycle import TxnState
from moncore.domain.money import check_amount_minor, currency_exponent
from moncore.domain.settlement import FUNDING_CLEARING
from moncore.domain.transactions import (
    HOLDING_CAPTURES,
    AccountKind,
    AccountRef,
    Event,
    EventKind,
    Leg,
    Transaction,
    TxnStatus,
    TxnType,
    hold_pair,
    settled_pair,
)
from moncore.ledger import history, views
from moncore.ledger.directory import DIRECTORY
from moncore.providers.calls import call_failed
from moncore.providers.open_banking import CollectionRequest, Status, open_banking_provider
from moncore.store import accounts as account_store
from moncore.store import balances as balance_store
from moncore.store import ledger as ledger_store
from moncore.store.models import AccountItem, UserItem, plain_map
from moncore.tenancy.service import TenancyService


class LedgerService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._checks = MovementChecks(self._tenancy)

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
        try:
            check_user_country(country, self._tenancy.tenant_config(tenant_id).jurisdictions)
        except GeoBlocked as refused:
            if account_store.find_user_item(tenant_id, user_id) is not None:
                return Result(self.get_user(caller, user_id), replayed=True)  # created before the rule changed
            context = {"operation": "user.create", "external_ref": external_ref, "country": country}
            audit_refusal(caller, refused, subject_id=user_id, context=context)
            raise
        # Sanctions screening (docs/screening.md): confirmed -> refused, nothing created; possible -> created
        # pending_review with a case, in the same transaction; else clear.
        gate = default_screening_gate()
        verdict = gate.screen_new_user(tenant_id, full_name=full_name, country=country, date_of_birth=date_of_birth)
        if verdict.status is ScreeningStatus.CONFIRMED:
            if account_store.find_user_item(tenant_id, user_id) is not None:
                return Result(self.get_user(caller, user_id), replayed=True)  # created before the lists changed
            blocked = gate.refusal(verdict, subject=f"user {full_name!r}")
            screened: dict[str, Any] = {"operation": "user.create", "external_ref": external_ref}
            screened["screening"] = verdict.record()
            audit_refusal(caller, blocked, subject_id=user_id, context=screened)
            raise blocked
        now = now_rfc3339()
        case = None
        if verdict.status is ScreeningStatus.PENDING_REVIEW:
            case = gate.new_user_case(caller, tenant_id=tenant_id, user_id=user_id, verdict=verdict, at=now)
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
            created_at=now,
            screening_status=verdict.status.value,
            screened_at=now,
            screening_lists_version=verdict.lists_version,
            screening_case_id=case[0].id if case else None,
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
                    payload={**views.user_view(item), "screening": verdict.record()},
                ),
                case=case,
            )
        except AlreadyExists:
            if account_store.user_id_for_external_ref(tenant_id, external_ref) == user_id:
                return Result(self.get_user(caller, user_id), replayed=True)  # same key, executed before
            raise
        return Result(views.user_view(item))

    def get_user(self, caller: Caller, user_id: str) -> dict[str, Any]:
        item = account_store.find_user_item(caller.require_tenant(), user_id)
        if item is None:
            raise NotFound(f"user {user_id} not found")
        return views.user_view(item)

    # ---------------------------------------------------------------- accounts
    def create_account(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        user_id: str,
        currency: str,
        merchant: dict[str, str] | None = None,
    ) -> Result:
        """A user account; with a `merchant` profile (name, city, category_code) a merchant account, which can
        create QR payment requests (moncore.ledger.qr)."""
        tenant_id = caller.require_tenant()
        self._tenancy.require_capability(tenant_id, Capability.WALLETS, caller)
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
            merchant=merchant,
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
                    payload=views.account_view(item),
                ),
            )
        except AlreadyExists:
            existing = account_store.find_account_item(tenant_id, account_id)
            same = existing is not None and (existing.user_id, existing.currency, existing.merchant) == (
                user_id,
                currency,
                merchant,
            )
            if not same:
                raise
            return Result(self.get_account(caller, account_id), replayed=True)
        DIRECTORY.remember(tenant_id, account_store.to_ref(item))
        return Result(self.get_account(caller, account_id))

    def get_account(self, caller: Caller, account_id: str, *, as_of: str | None = None) -> dict[str, Any]:
        """The account with its balance now, or at the instant `as_of` (derived from the ledger, see history)."""
        tenant_id = caller.require_tenant()
        item = account_store.find_account_item(tenant_id, account_id)
        if item is None:
            raise NotFound(f"account {account_id} not found")
        ref = account_store.to_ref(item)
        view = views.account_view(item)
        if as_of is None:
            balance, version = balance_store.read_balance(tenant_id, ref)
            view["balance"] = views.balance_view(balance, item.currency, version)
        else:
            balance, count = history.balance_as_of(tenant_id, account_id, as_of)
            view["balance"] = views.balance_view(balance, item.currency, count) | {"as_of": as_of}
        return view

    def list_entries(
        self, caller: Caller, account_id: str, *, limit: int, cursor: str | None, as_of: str | None = None
    ) -> dict[str, Any]:
        tenant_id = caller.require_tenant()
        if account_store.find_account_item(tenant_id, account_id) is None:
            raise NotFound(f"account {account_id} not found")
        entries, next_cursor = ledger_store.list_entries(tenant_id, account_id, limit=limit, cursor=cursor, as_of=as_of)
        return {"items": [views.entry_view(e) for e in entries], "next_cursor": next_cursor}

    # ---------------------------------------------------------------- postings
    def fund(
        self, caller: Caller, request: RequestIdentity, *, account_id: str, amount_minor: int, currency: str
    ) -> Result:
        """Collect through the tenant's open-banking provider, then post clearing -> user account: at once when the
        provider settles in its answer, else when its webhooks report the outcome (moncore.ledger.open_banking)."""
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.FUNDINGS, caller)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        (account,) = DIRECTORY.resolve(tenant_id, [account_id], currency)
        require_user_account(account)
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        decision = decide_movement(
            self._checks, caller, txn_id, credit=account, credit_minor=amount_minor, aml=Operation.FUNDING
        )
        if decision is None:
            return replay_from_ledger(caller, request, txn_id)
        # Refuse before collecting money the ledger would refuse to post; the balance condition stays the guard.
        try:
            self._checks.precheck_caps(caller, decision, subject_id=txn_id)
        except LimitExceeded:
            if ledger_store.load_transaction(tenant_id, txn_id) is None:
                raise
            return replay_from_ledger(caller, request, txn_id)  # this funding is what filled the account
        refuse_frozen(tenant_id, account)
        provider = open_banking_provider(self._tenancy.tenant_config(tenant_id).open_banking_provider)
        from moncore.ledger import open_banking  # noqa: PLC0415 - it builds on this module

        holder = account_store.find_user_item(tenant_id, account.user_id or "")
        collection = CollectionRequest(
            tenant_id,
            account_id,
            amount_minor,
            currency,
            txn_id,
            payer_ref=holder.external_ref if holder else "",
            correlation_id=caller.correlation_id,
        )
        try:
            collected = provider.collect(collection)
        except Exception as failed:  # a timeout or an outage: nothing was posted; the retry resends idempotently
            raise call_failed(caller, txn_id, provider.name, "collect", failed) from failed
        if collected.status is Status.PENDING:  # the outcome arrives by webhook (moncore.ledger.open_banking)
            return open_banking.create_pending_funding(
                caller,
                request,
                txn_id=txn_id,
                account=account,
                amount_minor=amount_minor,
                currency=currency,
                gate=gate,
                decision=decision,
                submitted=collected,
            )
        if collected.status is not Status.SETTLED:
            raise ValidationFailed(f"the provider answered {collected.status.value} to a collection")
        clearing = system_account(tenant_id, FUNDING_CLEARING, currency)
        txn = new_transaction(
            caller,
            request,
            txn_id,
            TxnType.FUNDING,
            amount_minor,
            currency,
            gate=gate,
            provider=collected.provider,
            provider_ref=collected.provider_ref,
            capture="review" if decision.review else "auto",
            checks=decision.checks,
            decision=decision,
        )
        # Under AML review the collected money waits in the user's pending_in until the case decides.
        if decision.review:
            legs, kind = hold_pair(clearing, account, amount_minor), EventKind.AUTHORIZED
        else:
            legs, kind = settled_pair(clearing, account, amount_minor), EventKind.SETTLED
        event = first_event(caller, request, txn, kind, legs)
        guard = f"provider_ref#{collected.provider}#{collected.provider_ref}"
        return create(caller, request, txn, event, guards=(guard,), decision=decision)

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
        capture: str = "auto",
        hold_expires_at: str | None = None,
    ) -> Result:
        """Move money between two user accounts: settled at once (capture "auto"), or held until captured, voided or
        expired (capture "manual"; the hold counts against the payer's available balance)."""
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.TRANSFERS, caller)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        if from_account_id == to_account_id:
            raise ValidationFailed(
                "from_account_id and to_account_id must differ",
                errors=[{"loc": ["body", "to_account_id"], "msg": "same as from_account_id"}],
            )
        if capture == "auto" and hold_expires_at is not None:
            raise ValidationFailed(
                "hold_expires_at applies only to capture 'manual'",
                errors=[{"loc": ["body", "hold_expires_at"], "msg": "only with capture 'manual'"}],
            )
        source, destination = DIRECTORY.resolve(tenant_id, [from_account_id, to_account_id], currency)
        require_user_account(source)
        require_user_account(destination)
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        manual = capture == "manual"
        try:
            expiry = hold_expiry(hold_expires_at) if manual else None
        except ValidationFailed:
            if ledger_store.load_transaction(tenant_id, txn_id) is None:
                raise
            return replay_from_ledger(caller, request, txn_id)  # posted before the requested expiry passed
        # A hold counts against the payer's limits when placed; the payee's cap applies when it is captured.
        decision = decide_movement(
            self._checks,
            caller,
            txn_id,
            debit=source,
            debit_minor=amount_minor,
            credit=destination,
            credit_minor=amount_minor,
            capped=not manual,
            aml=Operation.TRANSFER,
        )
        if decision is None:
            return replay_from_ledger(caller, request, txn_id)
        if decision.review:  # held for the case, whatever capture was asked; no expiry: the case decides
            manual, capture, expiry = True, "review", None
        txn = new_transaction(
            caller,
            request,
            txn_id,
            TxnType.TRANSFER,
            amount_minor,
            currency,
            gate=gate,
            reference=reference,
            capture=capture,
            hold_expires_at=expiry,
            checks=decision.checks,
            decision=decision,
        )
        if manual:
            legs, kind = hold_pair(source, destination, amount_minor), EventKind.AUTHORIZED
        else:
            legs, kind = settled_pair(source, destination, amount_minor), EventKind.SETTLED
        event = first_event(caller, request, txn, kind, legs)
        return create(caller, request, txn, event, decision=decision)

    def get_transaction(self, caller: Caller, txn_id: str) -> dict[str, Any]:
        stored = ledger_store.load_transaction(caller.require_tenant(), txn_id)
        if stored is None:
            raise NotFound(f"transaction {txn_id} not found")
        return views.transaction_view(stored)


# -------------------------------------------------------------------- shared by the ledger services
DEFAULT_HOLD_TTL = timedelta(days=7)
MAX_HOLD_TTL = timedelta(days=31)  # card schemes keep authorisations at most about a month


def hold_expiry(requested: str | None) -> str:
    """The hold's expiry: the requested instant (normalised; in the future, at most 31 days away) or 7 days."""
    return future_instant(requested, field="hold_expires_at", default=DEFAULT_HOLD_TTL, maximum=MAX_HOLD_TTL)


def future_instant(requested: str | None, *, field: str, default: timedelta, maximum: timedelta) -> str:
    """An expiry: the requested instant (normalised; in the future, at most `maximum` away) or now + `default`."""
    now = utc_now()
    if requested is None:
        return rfc3339(now + default)
    expiry = parse_instant(requested, field=field)
    if not rfc3339(now) < expiry <= rfc3339(now + maximum):
        within = f"{maximum.days} days" if maximum.days else f"{maximum.seconds // 60} minutes"
        raise ValidationFailed(
            f"{field} must be in the future and at most {within} away",
            errors=[{"loc": ["body", field], "msg": f"future, within {within}"}],
        )
    return expiry


def new_transaction(
    caller: Caller,
    request: RequestIdentity,
    txn_id: str,
    txn_type: TxnType,
    amount_minor: int,
    currency: str,
    *,
    gate: dict[str, str],
    reference: str | None = None,
    provider: str | None = None,
    provider_ref: str | None = None,
    capture: str = "auto",
    hold_expires_at: str | None = None,
    reverses_txn_id: str | None = None,
    fx: dict[str, Any] | None = None,
    checks: tuple[dict[str, Any], ...] = (),
    decision: MovementDecision | None = None,
) -> Transaction:
    """A new transaction header; `checks` are the compliance checks (geo, tier limits, AML) recorded after the
    gate's; under an AML review the compliance decision is "review" and names the case it opened."""
    compliance: dict[str, Any] = {"decision": "allow", "checks": [gate, *checks], "decided_at": now_rfc3339()}
    if decision is not None and decision.review:
        compliance |= {"decision": "review", "case_id": aml_rules.review_case_id(caller.require_tenant(), txn_id)}
    return Transaction(
        id=txn_id,
        tenant_id=caller.require_tenant(),
        type=txn_type,
        amount_minor=amount_minor,
        currency=currency,
        created_at=now_rfc3339(),
        request_hash=request.request_hash,
        correlation_id=caller.correlation_id,
        reference=reference,
        provider=provider,
        provider_ref=provider_ref,
        fingerprint=request.fingerprint,
        # The gating decision is recorded with the posting (invariant 5); compliance rules extend it.
        compliance=compliance,
        capture=capture,
        hold_expires_at=hold_expires_at,
        reverses_txn_id=reverses_txn_id,
        fx=fx,
    )


def first_event(
    caller: Caller, request: RequestIdentity, txn: Transaction, kind: EventKind, legs: tuple[Leg, ...]
) -> Event:
    status = TxnStatus.AUTHORIZED if kind is EventKind.AUTHORIZED else TxnStatus.SETTLED
    return Event(
        seq=1,
        kind=kind,
        status=status,
        amount_minor=txn.amount_minor,
        legs=legs,
        recorded_at=txn.created_at,
        op_id=txn.id,
        request_hash=request.request_hash,
        actor=caller.actor,
        correlation_id=caller.correlation_id,
    )


def posting_audit(caller: Caller, txn: Transaction, event: Event, *, action: str) -> AuditEvent:
    return audit_event(
        tenant_id=txn.tenant_id,
        action=action,
        actor=caller.actor,
        correlation_id=caller.correlation_id,
        subject_id=txn.id,
        payload={
            "txn_id": txn.id,
            "type": txn.type.value,
            "event": event.kind.value,
            "seq": event.seq,
            "status": event.status.value,
            "amount_minor": event.amount_minor,
            "currency": txn.currency,
            "request_hash": event.request_hash,
            "related_txn_id": event.related_txn_id,
            "legs": [[leg.account.account_id, leg.amount_minor, leg.phase.value] for leg in event.legs],
            # Executed by a provider: its reference, as on the legs, so the audit trail alone names what
            # reconciliation matches (a withdrawal's is its submission's, moncore.ledger.lifecycle).
            **({"provider": txn.provider, "provider_ref": txn.provider_ref} if txn.provider else {}),
        },
    )


def decide_movement(checks: MovementChecks, caller: Caller, txn_id: str, **movement: Any) -> MovementDecision | None:
    """The compliance decision of a new transaction (MovementChecks.decide); None when it refuses a request whose
    transaction the ledger already holds (executed before, its idempotency record expired): answer that as a replay."""
    try:
        return checks.decide(caller, subject_id=txn_id, **movement)
    except (ComplianceBlocked, LimitExceeded):
        if ledger_store.load_transaction(caller.require_tenant(), txn_id) is None:
            raise
        return None


def create(
    caller: Caller,
    request: RequestIdentity,
    txn: Transaction,
    event: Event,
    *,
    guards: tuple[str, ...] = (),
    decision: MovementDecision | None = None,
    conditions: tuple[ledger_store.PostingCondition, ...] = (),
) -> Result:
    """Post a new transaction with its first event; a second attempt with the same key answers the first. The
    decision's counters and caps are enforced by the posting's own conditions (a refusal there is audited), and so
    are `conditions` on other items (a card's status)."""
    holds: tuple[tuple[Transaction, TxnState], ...] = ()
    if txn.capture in HOLDING_CAPTURES:
        holds = ((txn, TxnState(txn.type, event.status, txn.amount_minor, last_seq=1)),)
    records, audits = aml_records(caller, txn, decision)
    posting = ledger_store.Posting(
        tenant_id=txn.tenant_id,
        audit=posting_audit(caller, txn, event, action=f"{txn.type.value}.{event.kind.value}"),
        created=(txn,),
        events=((txn, event),),
        guards=guards,
        holds=holds,
        counters=decision.counters(txn.created_at) if decision else (),
        caps=decision.caps if decision else (),
        velocity=decision.velocity(txn.created_at) if decision else (),
        records=records,
        audits=audits,
        conditions=conditions,
    )
    try:
        ledger_store.post(posting)
    except ledger_store.DuplicateTransaction:
        return replay_from_ledger(caller, request, txn.id)
    except LimitExceeded as refused:
        audit_refusal(caller, refused, subject_id=txn.id, context={"checks": txn.compliance.get("checks", [])})
        raise
    return Result(views.transaction_view(_must_load(txn.tenant_id, txn.id)))


def aml_records(
    caller: Caller, txn: Transaction, decision: MovementDecision | None
) -> tuple[tuple[Model, ...], tuple[AuditEvent, ...]]:
    """What the posting writes for its AML decision: the AML event, and under review the case it opens (with the
    case's audit event), so the held funds and their case exist together or not at all."""
    if decision is None or decision.aml is None:
        return (), ()
    if not decision.review:
        return (aml_rules.event_item(caller, txn.id, decision.aml),), ()
    case, opened = aml_rules.review_case(caller, txn.id, decision.aml)
    if case.id != txn.compliance.get("case_id"):
        raise InvariantViolation(f"transaction {txn.id} names case {txn.compliance.get('case_id')}, not {case.id}")
    return (aml_rules.event_item(caller, txn.id, decision.aml, case_id=case.id), case), (opened,)


def replay_from_ledger(caller: Caller, request: RequestIdentity, txn_id: str) -> Result:
    """The ledger already holds this key's transaction (the idempotency record expired or was lost)."""
    stored = _must_load(caller.require_tenant(), txn_id)
    header = stored.header
    if header.request_hash != request.request_hash:
        stored_fingerprint = plain_map(header.fingerprint)
        differing = sorted(
            k
            for k in set(stored_fingerprint) | set(request.fingerprint)
            if stored_fingerprint.get(k) != request.fingerprint.get(k)
        )
        raise IdempotencyKeyReused(
            f"Idempotency-Key was used with a different request; differing fields: {', '.join(differing)}",
            errors=[{"loc": ["body", field], "msg": "differs from the original request"} for field in differing],
        )
    return Result(views.transaction_view(stored), replayed=True)


def _must_load(tenant_id: str, txn_id: str) -> ledger_store.StoredTxn:
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise InvariantViolation(f"transaction {txn_id} was written but cannot be read back")
    return stored


def system_account(tenant_id: str, purpose: str, currency: str) -> AccountRef:
    """The tenant's system account for `purpose` in `currency`, created on first use with the configured shards."""
    account_id = f"sys_{purpose}_{currency.lower()}"
    try:
        return DIRECTORY.resolve(tenant_id, [account_id], currency)[0]
    except NotFound:
        item = AccountItem(
            f"{tenant_id}#{account_id}",
            id=account_id,
            tenant_id=tenant_id,
            user_id=None,
            currency=currency,
            kind=AccountKind.SYSTEM.value,
            shards=settings().hot_account_shards,
            purpose=purpose,
            status="ACTIVE",
            created_at=now_rfc3339(),
        )
        account_store.ensure_system_account(item)
        # Another writer may have created it first (perhaps with other shards): the stored item is the truth.
        return DIRECTORY.resolve(tenant_id, [account_id], currency)[0]


def require_user_account(account: AccountRef) -> None:
    if account.kind is not AccountKind.USER:
        raise ValidationFailed(f"account {account.account_id} is a system account and cannot be used here")
