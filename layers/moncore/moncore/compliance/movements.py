"""Compliance checks of a money movement before it is posted: geo restrictions and KYC tier limits (DESIGN.md section
6; docs/limits-and-geo.md).

`MovementChecks.decide` reads the users whose accounts move (one BatchGetItem) and the tenant configuration (cached),
then
- checks every involved user's country against the tenant's jurisdictions and the FATF list (GeoBlocked);
- for the debited user (an outgoing movement): resolves its tier's limits in the account's currency and checks the
  amount against them (LimitExceeded for the per-transaction limit, or an amount above a window on its own); the day
  and month counters are charged by the posting itself, conditionally, in the same TransactWriteItems (invariant 7);
- for the credited user account: the balance cap, enforced by a condition on the credited balance item.
- refuses users with an unresolved (pending_review) or confirmed sanctions screening match (docs/screening.md);
- scores new requests with the AML rules (allow / review / block, docs/aml.md) from the parties' velocity, read in
  the same BatchGetItem as the users.
It returns the checks to record on the transaction (invariant 5) and what the posting must enforce. Every refusal is
audited (action `compliance.blocked`) before it is raised: nothing is posted, but the refusal is on record.

What counts as outgoing (decided per operation by the caller, see docs/limits-and-geo.md): transfers to another user
and FX conversions count for the payer when posted or authorised (a hold counts when placed; releasing it does not
give the amount back); transfers between two accounts of the same user in one currency do not; fundings, captures
and reversals do not count, and fundings, settled transfers, FX conversions and captures are capped on the credit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moncore.compliance import aml as aml_rules
from moncore.compliance.refusals import audit_refusal
from moncore.compliance.screening.gate import movement_refusal
from moncore.domain.aml import AmlDecision, Decision, Operation, Party
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.domain.errors import ComplianceBlocked, InvariantViolation, LimitExceeded, NotFound
from moncore.domain.geo import check_user_country
from moncore.domain.limits import (
    BalanceCap,
    CounterCharge,
    TierLimits,
    balance_cap,
    check_outgoing,
    outgoing_charges,
    tier_limits,
)
from moncore.domain.transactions import AccountKind, AccountRef
from moncore.domain.velocity import VelocityCharge
from moncore.store.balances import read_balance
from moncore.store.models import UserItem
from moncore.store.velocity import read_users_and_velocity
from moncore.tenancy.service import TenancyService


@dataclass(frozen=True, slots=True)
class MovementDecision:
    """The allow (or review) decision's checks (recorded on the transaction) and what the posting enforces and
    records atomically: the tier counters and caps, the AML decision and the parties' velocity."""

    checks: tuple[dict[str, Any], ...] = ()
    outgoing: tuple[tuple[str, TierLimits, int], ...] = ()  # (user id, limits, amount) charged to the counters
    caps: tuple[BalanceCap, ...] = ()
    aml: AmlDecision | None = None
    velocity_seen: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    @property
    def review(self) -> bool:
        """The AML rules want the funds held until a case decides (docs/aml.md)."""
        return self.aml is not None and self.aml.decision is Decision.REVIEW

    def counters(self, recorded_at: str) -> tuple[CounterCharge, ...]:
        """The counter charges of a posting recorded at `recorded_at` (its windows are those of that instant)."""
        return tuple(
            charge
            for user_id, limits, amount_minor in self.outgoing
            for charge in outgoing_charges(limits, user_id, amount_minor, recorded_at)
        )

    def velocity(self, recorded_at: str) -> tuple[VelocityCharge, ...]:
        if self.aml is None:
            return ()
        return aml_rules.velocity_charges(self.aml, self.velocity_seen, recorded_at)


class MovementChecks:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    def decide(
        self,
        caller: Caller,
        *,
        subject_id: str,
        debit: AccountRef | None = None,
        debit_minor: int = 0,
        credit: AccountRef | None = None,
        credit_minor: int = 0,
        capped: bool = True,
        aml: Operation | None = None,
        can_hold: bool = True,
    ) -> MovementDecision:
        """Checks of a movement of `debit_minor` out of `debit` (counted as the debited user's outgoing money) and
        `credit_minor` into `credit` (capped unless `capped` is False: a hold is capped when captured); either may
        be None or a system account (nothing to check for it). A transfer between two accounts of one user in one
        currency is not outgoing. With `aml`, the request is also scored by the AML rules (a new request, not a
        step of an existing transaction); a review the operation cannot hold (`can_hold` False) is a block.
        Raises GeoBlocked, LimitExceeded or ComplianceBlocked after auditing the refusal under `subject_id`."""
        tenant_id = caller.require_tenant()
        payer = debit if debit is not None and debit.kind is AccountKind.USER else None
        payee = credit if credit is not None and credit.kind is AccountKind.USER else None
        own_money = bool(payer and payee and (payer.user_id, payer.currency) == (payee.user_id, payee.currency))
        if own_money:
            payer = None  # the money stays with its owner in the same currency
        config = self._tenancy.tenant_config(tenant_id)
        moving = [ref for ref in (debit, credit) if ref and ref.kind is AccountKind.USER]
        # Velocity is read (and later charged) for payments between users, card payments, withdrawals and fundings; a
        # conversion moves nothing to anyone else, and money staying with its owner is no movement at all.
        counted = (
            aml in (Operation.TRANSFER, Operation.FUNDING, Operation.CARD_AUTHORIZATION, Operation.WITHDRAWAL)
            and not own_money
        )
        velocity_of = [(ref.user_id or "", ref.currency) for ref in moving] if counted else []
        users, velocity = _users(tenant_id, moving, velocity_of)
        checks: list[dict[str, Any]] = []
        outgoing: tuple[tuple[str, TierLimits, int], ...] = ()
        caps: tuple[BalanceCap, ...] = ()
        try:
            for user in users.values():
                checks.append({**check_user_country(user.country, config.jurisdictions), "user_id": user.id})
                unresolved = movement_refusal(user)  # a possible or confirmed sanctions match (docs/screening.md)
                if unresolved is not None:
                    raise unresolved
            if payer is not None:
                user = users[payer.user_id]
                limits = tier_limits(user.tier, payer.currency, config.tier_limits)
                check_outgoing(limits, debit_minor)
                checks.append(
                    {
                        "check": "tier_limits",
                        "user_id": user.id,
                        "account_id": payer.account_id,
                        "amount_minor": debit_minor,
                        **limits.record(),
                        "result": "pass",
                        "enforced": "per-transaction before the write; daily and monthly by counter conditions",
                    }
                )
                outgoing = ((user.id, limits, debit_minor),)
            if payee is not None and capped:
                user = users[payee.user_id]
                limits = tier_limits(user.tier, payee.currency, config.tier_limits)
                cap = balance_cap(limits, payee.account_id, credit_minor)
                caps = () if cap is None else (cap,)
                checks.append(
                    {
                        "check": "balance_cap",
                        "user_id": user.id,
                        "account_id": payee.account_id,
                        "amount_minor": credit_minor,
                        "tier": limits.tier,
                        "currency": limits.currency,
                        "source": limits.source,
                        "balance_cap_minor": limits.balance_cap_minor,
                        "result": "pass",
                        "enforced": "by a condition on the credited balance",
                    }
                )
        except (ComplianceBlocked, LimitExceeded) as refused:
            audit_refusal(caller, refused, subject_id=subject_id, context={"checks": checks})
            raise
        if aml is None:
            return MovementDecision(tuple(checks), outgoing, caps)
        moved = debit or credit
        if moved is None:
            raise InvariantViolation("an AML decision needs a movement")
        parties = (None, None) if own_money else (payer, payee)
        scored = self._score(aml, users, velocity, *parties, debit_minor or credit_minor, moved.currency)
        if scored.decision is Decision.BLOCK or (scored.decision is Decision.REVIEW and not can_hold):
            detail = None if can_hold else f"{aml.value} cannot be held for review, so a review blocks it"
            blocked = aml_rules.block(caller, subject_id, scored, detail=detail)
            audit_refusal(caller, blocked, subject_id=subject_id, context={"checks": [*checks, scored.record()]})
            raise blocked
        checks.append(scored.record())
        return MovementDecision(tuple(checks), outgoing, caps, scored, velocity)

    @staticmethod
    def _score(
        operation: Operation,
        users: dict[str | None, UserItem],
        velocity: dict[tuple[str, str], dict[str, int]],
        payer: AccountRef | None,
        payee: AccountRef | None,
        amount_minor: int,
        currency: str,
    ) -> AmlDecision:
        decided_at = now_rfc3339()

        def party(ref: AccountRef | None) -> Party | None:
            if ref is None:
                return None
            seen = velocity.get((ref.user_id or "", ref.currency), {})
            return aml_rules.party(users[ref.user_id], seen, decided_at)

        return aml_rules.decide(
            operation,
            amount_minor=amount_minor,
            currency=currency,
            decided_at=decided_at,
            payer=party(payer),
            payee=None if operation is Operation.FX_CONVERSION else party(payee),
        )

    def precheck_caps(self, caller: Caller, decision: MovementDecision, *, subject_id: str) -> None:
        """Refuse early when a credited balance is already too high for the credit: a read, so only a courtesy
        before an irreversible step (collecting money from outside); the posting's condition is the enforcement."""
        tenant_id = caller.require_tenant()
        for cap in decision.caps:
            account = AccountRef(cap.account_id, cap.currency, AccountKind.USER)
            posted_minor = read_balance(tenant_id, account)[0].posted_minor
            if posted_minor + cap.credit_minor > cap.cap_minor:
                refused = cap.refusal(cap.credit_minor)
                audit_refusal(caller, refused, subject_id=subject_id, context={"checks": list(decision.checks)})
                raise refused


def _users(
    tenant_id: str, accounts: list[AccountRef], velocity_of: list[tuple[str, str]]
) -> tuple[dict[str | None, UserItem], dict[tuple[str, str], dict[str, int]]]:
    """The users of `accounts` and the velocity items asked for, read together (one BatchGetItem on the posting
    path, not one GetItem each)."""
    found, velocity = read_users_and_velocity(tenant_id, [a.user_id or "" for a in accounts], velocity_of)
    for account in accounts:
        if account.user_id not in found:
            raise NotFound(f"the user of account {account.account_id} was not found")
    return {account.user_id: found[account.user_id or ""] for account in accounts}, velocity
