"""Compliance cases as pure rules: statuses, allowed moves, who may decide, and what each outcome does.

    OPEN -> IN_REVIEW (assigned) -> ESCALATED -> CLOSED (with an outcome)
    OPEN | IN_REVIEW | ESCALATED -> CLOSED by a decision; CLOSED is final.

Outcomes: no_action, released (a held payment goes ahead: the hold is captured), reversed (the held payment is voided,
or a settled one reversed), frozen (the subject user is frozen), reported (a report was filed; money stays as is).
"""

from __future__ import annotations

from enum import StrEnum

from moncore.domain.errors import Forbidden, InvalidStateTransition


class CaseStatus(StrEnum):
    OPEN = "OPEN"
    IN_REVIEW = "IN_REVIEW"
    ESCALATED = "ESCALATED"
    CLOSED = "CLOSED"


class CaseOutcome(StrEnum):
    NO_ACTION = "no_action"
    RELEASED = "released"
    REVERSED = "reversed"
    FROZEN = "frozen"
    REPORTED = "reported"


class CaseKind(StrEnum):
    AML_REVIEW = "aml_review"
    SCREENING_HIT = "screening_hit"
    MANUAL = "manual"
    KYC_REVIEW = "kyc_review"  # a KYC check referred by risk flags (pep, adverse media, ...): no upgrade meanwhile
    TIER_LIMIT_EXCESS = "tier_limit_excess"  # a balance above the cap of the user's tier (the tier_enforcement job)


MOVES: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.IN_REVIEW, CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.IN_REVIEW: frozenset({CaseStatus.IN_REVIEW, CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.ESCALATED: frozenset({CaseStatus.ESCALATED, CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset(),
}
CASE_WORKERS = ("compliance_officer", "admin")  # may assign, note, escalate and decide
SENIOR = ("admin",)  # an ESCALATED case is decided by an admin
MONEY_OUTCOMES = frozenset({CaseOutcome.RELEASED, CaseOutcome.REVERSED})


def require_move(current: CaseStatus, target: CaseStatus) -> None:
    if target not in MOVES[current]:
        raise InvalidStateTransition(f"a {current} case cannot move to {target}")


def require_decider(status: CaseStatus, role: str) -> None:
    allowed = SENIOR if status is CaseStatus.ESCALATED else CASE_WORKERS
    if role not in allowed:
        raise Forbidden(f"deciding a {status} case needs one of the roles: {', '.join(allowed)}")
