"""Withdrawals: pay a user's money out to an external IBAN through the tenant's open banking provider
(docs/providers.md, "Withdrawals").

    POST /v1/withdrawals {account_id, amount_minor, currency, beneficiary: {name, iban}}
      capability `withdrawals` (issuer-gated: 403 capability_disabled until live through the four-eyes flow)
      -> beneficiary: IBAN format and check digits -> its country (tenant jurisdictions, FATF) -> sanctions
         screening (confirmed: 422 compliance_blocked; possible: held for a screening_hit case)
      -> the payer's tier limits and the AML rules as an outgoing payment (review: held for an aml_review case)
      -> ONE posting: the hold (user -a AUTHORIZED, payout clearing +a AUTHORIZED), counters, velocity, AML
         event, any case; status AUTHORIZED
      -> provider.payout (idempotent on the transaction id) -> a `submitted` event with the provider's reference
         and its guard `provider_ref#<provider>#<ref>`
      -> webhook payout.settled: the hold is captured (SETTLED: the money left for the payout clearing account)
         webhook payout.failed: the hold is voided (REVERSED: the money is available again)

A payout call that fails or times out leaves the hold (503 provider_unavailable, retryable); the same request with
the same Idempotency-Key finds the transaction and sends the same payout again, which the provider answers
idempotently (the reference derives from our transaction id), so nothing is ever paid twice. Once submitted, only
the provider's outcome moves the hold (ledger.lifecycle): neither the partner nor an officer can void money the
provider is paying out. A held review is submitted only when its case is decided `released` (compliance/cases.py
calls `release_held`); `reversed` voids it.

Errors: CapabilityDisabled, ValidationFailed (IBAN), GeoBlocked, ComplianceBlocked, LimitExceeded,
InsufficientFunds, AccountNotActive, IdempotencyKeyReused, ProviderUnavailable (retryable).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from moncore.compliance.case_records import new_case
from moncore.compliance.movements import MovementChecks
from moncore.compliance.refusals import audit_refusal
from moncore.compliance.screening.gate import BeneficiaryScreening, ScreeningGate
from moncore.compliance.screening.gate import default_gate as default_screening_gate
from moncore.domain.aml import Operation
from moncore.domain.audit import AuditEvent
from moncore.domain.canonical import sha256_hex
from moncore.domain.capabilities import Capability
from moncore.domain.cases import CaseKind
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import GeoBlocked, InvalidStateTransition, InvariantViolation, LimitExceeded, NotFound
from moncore.domain.geo import check_counterparty_country, iban_country
from moncore.domain.iban import check_iban, masked
from moncore.domain.ids import derived_id
from moncore.domain.lifecycle import TxnState
from moncore.domain.money import check_amount_minor, currency_exponent
from moncore.domain.settlement import PAYOUT_CLEARING
from moncore.domain.transactions import HOLDING_CAPTURES, EventKind, TxnStatus, TxnType, hold_pair
from moncore.ledger import views
from moncore.ledger.directory import DIRECTORY
from moncore.ledger.lifecycle import LifecycleService
from moncore.ledger.lifecycle import Operation as StepOperation
from moncore.ledger.open_banking import (
    append_event,
    capture_step,
    outcome_op_id,
    outcome_request_hash,
    provider_caller,
    provider_guard,
)
from moncore.ledger.service import (
    aml_records,
    decide_movement,
    first_event,
    new_transaction,
    posting_audit,
    replay_from_ledger,
    require_user_account,
    system_account,
)
from moncore.providers.calls import call_failed
from moncore.providers.open_banking import PayoutRequest, Status, open_banking_provider
from moncore.store import accounts as account_store
from moncore.store import ledger as ledger_store
from moncore.store.models import CaseItem
from moncore.tenancy.service import TenancyService

BENEFICIARY_CHECK = "beneficiary"
_ATTEMPTS = 8


class WithdrawalService:
    def __init__(
        self,
        tenancy: TenancyService | None = None,
        lifecycle: LifecycleService | None = None,
        screening: ScreeningGate | None = None,
    ) -> None:
        self._tenancy = tenancy or TenancyService()
        self._checks = MovementChecks(self._tenancy)
        self._lifecycle = lifecycle or LifecycleService(self._checks)
        self._screening = screening

    def withdraw(
        self,
        caller: Caller,
        request: RequestIdentity,
        *,
        account_id: str,
        amount_minor: int,
        currency: str,
        beneficiary: dict[str, str],
    ) -> Result:
        tenant_id = caller.require_tenant()
        gate = self._tenancy.require_capability(tenant_id, Capability.WITHDRAWALS, caller)
        check_amount_minor(amount_minor)
        currency_exponent(currency)
        name, iban = beneficiary["name"], check_iban(beneficiary["iban"])
        (account,) = DIRECTORY.resolve(tenant_id, [account_id], currency)
        require_user_account(account)
        txn_id = derived_id("txn", tenant_id, request.idempotency_key)
        existing = ledger_store.load_transaction(tenant_id, txn_id)
        if existing is not None:  # a retry (after a provider failure) or a replay: send what is not sent yet
            replay_from_ledger(caller, request, txn_id)  # 409 when the key is reused with another body
            return self._resume(caller, existing)
        config = self._tenancy.tenant_config(tenant_id)
        country = iban_country(iban)
        context = {"operation": "withdrawal", "beneficiary": name, "iban": masked(iban), "country": country}
        try:
            geo = check_counterparty_country(country, config.jurisdictions, loc=["body", "beneficiary", "iban"])
        except GeoBlocked as refused:
            audit_refusal(caller, refused, subject_id=txn_id, context=context)
            raise
        gate_ = self._screening or default_screening_gate()
        screened = gate_.screen_beneficiary(caller, subject_id=txn_id, name=name, country=country)
        clearing = system_account(tenant_id, PAYOUT_CLEARING, currency)
        decision = decide_movement(
            self._checks,
            caller,
            txn_id,
            debit=account,
            debit_minor=amount_minor,
            credit=clearing,
            credit_minor=amount_minor,
            aml=Operation.WITHDRAWAL,
        )
        if decision is None:
            return replay_from_ledger(caller, request, txn_id)
        adapter = open_banking_provider(config.open_banking_provider)
        beneficiary_check = {
            "check": BENEFICIARY_CHECK,
            "name": name,
            "iban": iban,
            "country": country,
            "iban_check": "ISO 13616: registered length and format, mod-97 check digits",
            "result": "pass",
        }
        review = decision.review or screened.review
        txn = new_transaction(
            caller,
            request,
            txn_id,
            TxnType.WITHDRAWAL,
            amount_minor,
            currency,
            gate=gate,
            provider=adapter.name,
            capture="review" if review else "provider",
            checks=(beneficiary_check, geo, screened.check(), *decision.checks),
            decision=decision,
        )
        records, audits = aml_records(caller, txn, decision)
        if screened.review:
            case, opened = _screening_case(caller, txn_id, account.user_id, screened)
            compliance = {**txn.compliance, "decision": "review", "screening_case_id": case.id}
            compliance.setdefault("case_id", case.id)
            txn = replace(txn, compliance=compliance)
            records, audits = (*records, case), (*audits, opened)
        txn = replace(txn, account_id=account_id)
        event = first_event(caller, request, txn, EventKind.AUTHORIZED, hold_pair(account, clearing, amount_minor))
        holds = ((txn, TxnState(txn.type, event.status, amount_minor, last_seq=1)),) if review else ()
        posting = ledger_store.Posting(
            tenant_id=tenant_id,
            audit=posting_audit(caller, txn, event, action="withdrawal.authorized"),
            created=(txn,),
            events=((txn, event),),
            holds=holds,
            counters=decision.counters(txn.created_at),
            caps=decision.caps,
            velocity=decision.velocity(txn.created_at),
            records=records,
            audits=audits,
        )
        try:
            ledger_store.post(posting)
        except ledger_store.DuplicateTransaction:
            return self._resume(caller, _load(tenant_id, txn_id))
        except LimitExceeded as refused:
            audit_refusal(caller, refused, subject_id=txn_id, context={"checks": txn.compliance.get("checks", [])})
            raise
        stored = _load(tenant_id, txn_id)
        if review:  # held: its case decides (released -> submitted, reversed -> voided)
            return Result(views.transaction_view(stored))
        return Result(self.submit(caller, stored))

    def _resume(self, caller: Caller, stored: ledger_store.StoredTxn) -> Result:
        state = views.txn_state(stored).status
        waiting = state is TxnStatus.AUTHORIZED and views.submitted_ref(stored) is None
        if not waiting or stored.header.capture in HOLDING_CAPTURES:
            return Result(views.transaction_view(stored), replayed=True)
        return Result(self.submit(caller, stored))

    def submit(self, caller: Caller, stored: ledger_store.StoredTxn) -> dict[str, Any]:
        """Hand the held withdrawal to its provider (idempotently) and record the submission once; an instant
        provider's SETTLED answer captures it at once, like its webhook would."""
        header = stored.header
        tenant_id, txn_id = header.tenant_id, header.txn_id
        adapter = open_banking_provider(header.provider or "")
        beneficiary = _beneficiary(stored)
        holder = account_store.find_user_item(tenant_id, _holder_id(stored))
        payout = PayoutRequest(
            tenant_id,
            header.account_id or "",
            int(header.amount_minor),
            header.currency or "",
            txn_id,
            beneficiary_name=str(beneficiary["name"]),
            beneficiary_iban=str(beneficiary["iban"]),
            payer_ref=holder.external_ref if holder else "",
            correlation_id=caller.correlation_id,
        )
        try:
            sent = adapter.payout(payout)
        except Exception as failed:  # the hold stays; a retry with the same key resends this very payout
            raise call_failed(caller, txn_id, adapter.name, "payout", failed) from failed
        op_id = derived_id("op", tenant_id, "submit", txn_id)
        request_hash = sha256_hex({"submit": txn_id, "provider_ref": sent.provider_ref})
        for _ in range(_ATTEMPTS):
            if views.submitted_ref(stored) is not None:
                break
            try:
                append_event(
                    caller,
                    stored,
                    kind=EventKind.SUBMITTED,
                    status=TxnStatus.AUTHORIZED,
                    legs=(),
                    op_id=op_id,
                    request_hash=request_hash,
                    guards=(provider_guard(adapter.name, sent.provider_ref),),
                    provider_ref=sent.provider_ref,
                    reason=f"sent to {adapter.name}",
                )
                break
            except (ledger_store.EventSlotTaken, ledger_store.DuplicateGuard):
                stored = _load(tenant_id, txn_id)
        else:
            raise InvariantViolation(f"withdrawal {txn_id} could not record its submission")
        if sent.status is Status.SETTLED:
            operation = StepOperation(
                provider_caller(tenant_id, adapter.name, caller.correlation_id),
                outcome_op_id(tenant_id, adapter.name, sent.provider_ref, Status.SETTLED),
                outcome_request_hash(sent.provider_ref, Status.SETTLED),
            )
            self._lifecycle.step(operation, txn_id, capture_step)
        return views.transaction_view(_load(tenant_id, txn_id))


def release_held(officer: Caller, case: CaseItem) -> dict[str, Any]:
    """A case decided `released` on a withdrawal held for review: submit it to the provider now (once: a retried
    decision finds it submitted). Its outcome then arrives by webhook like any other."""
    stored = _load(case.tenant_id, case.txn_id or "")
    state = views.txn_state(stored).status
    if state is not TxnStatus.AUTHORIZED:
        raise InvalidStateTransition(f"withdrawal {stored.header.txn_id} is {state.value}: nothing to release")
    caller = Caller(case.tenant_id, officer.actor, officer.role, officer.correlation_id)
    view = views.transaction_view(stored)
    if views.submitted_ref(stored) is None:
        view = WithdrawalService().submit(caller, stored)
    return {"txn_id": view["id"], "status": view["status"], "submitted_to": stored.header.provider}


def _screening_case(
    caller: Caller, txn_id: str, user_id: str | None, screened: BeneficiaryScreening
) -> tuple[CaseItem, AuditEvent]:
    """A possible sanctions match of the beneficiary: a screening_hit case about the held withdrawal (not about
    the user, whose own screening status it must not change), opened with the hold or not at all."""
    tenant_id = caller.require_tenant()
    return new_case(
        caller,
        case_id=derived_id("case", tenant_id, f"beneficiary:{txn_id}"),
        tenant_id=tenant_id,
        kind=CaseKind.SCREENING_HIT,
        reason=f"{screened.case_reason(txn_id)} (withdrawal by user {user_id})"[:2000],
        txn_id=txn_id,
        opened_by="system:screening",
        context={"screening": screened.verdict.record()},
        screening_hits=[hit.record() for hit in screened.verdict.hits],
    )


def _beneficiary(stored: ledger_store.StoredTxn) -> dict[str, Any]:
    checks: list[Any] = list(dict(stored.header.compliance or {}).get("checks", []))
    found = next((c for c in checks if isinstance(c, dict) and c.get("check") == BENEFICIARY_CHECK), None)
    if found is None:
        raise InvariantViolation(f"withdrawal {stored.header.txn_id} does not record its beneficiary")
    return found


def _holder_id(stored: ledger_store.StoredTxn) -> str:
    held = next((leg for leg in stored.legs if leg.account_id == stored.header.account_id), None)
    return (held.user_id if held else None) or ""


def _load(tenant_id: str, txn_id: str) -> ledger_store.StoredTxn:
    stored = ledger_store.load_transaction(tenant_id, txn_id)
    if stored is None:
        raise NotFound(f"transaction {txn_id} not found")
    return stored
