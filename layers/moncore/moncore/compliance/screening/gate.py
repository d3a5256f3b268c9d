"""Screening wired into the kernel: users at creation, beneficiaries of outgoing payments, money movements of users
under review, officers' decisions on screening cases, and the re-screening job. Rules in policy.py; storage in
store/screening.py; docs/screening.md.

- **Creation** (`LedgerService.create_user` calls `screen_new_user`, then `new_user_case`): a confirmed match refuses
  the user (422 `compliance_blocked`, refusal audited with the screening result, nothing created); a possible match
  creates the user `pending_review` and opens a `screening_hit` case in the same TransactWriteItems; no match: `clear`.
- **Movements**: `movement_refusal(user)` is pure over the user item the movement checks read anyway (one
  BatchGetItem), so a clear user's posting pays nothing for screening.
- **Beneficiaries**: `screen_beneficiary` refuses a confirmed match (audited) and returns a possible one for the
  caller to hold and review.
- **Decisions** (`on_case_decided`, from CaseService.decide): `no_action` remembers each of the case's matches as a
  false positive for the user, clears the user and screens them again at once (suppressing what was just cleared);
  `frozen` (the user is frozen by the decision) and `reported` set the user `confirmed`.
- **Re-screening** (`rescreen_tenant`, job `rescreen`): every user whose stored lists version differs from the
  current one (the list files' SHA-256 and the tenant watchlist's version) is screened again; a run with nothing
  changed screens nobody.

Kernel-opened cases and screening changes are recorded with actor `system:screening` and the triggering request's
correlation id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from moncore.compliance.case_records import new_case
from moncore.compliance.freezes import FreezeService
from moncore.compliance.refusals import audit_refusal
from moncore.compliance.screening.lists import Watchlist
from moncore.compliance.screening.policy import (
    ScreeningStatus,
    Verdict,
    case_reason,
    classify,
    hit_keys,
    lists_version,
    status_of,
)
from moncore.compliance.screening.watchlists import TenantWatchlists
from moncore.domain.audit import AuditEvent, audit_event
from moncore.domain.cases import CaseKind, CaseOutcome
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller
from moncore.domain.errors import AlreadyExists, ComplianceBlocked, ConcurrencyConflict, InvalidStateTransition
from moncore.domain.ids import derived_id
from moncore.providers.screening import ScreeningProvider, screening_provider
from moncore.store import screening as store
from moncore.store.accounts import find_user_item
from moncore.store.models import CaseItem, UserItem
from moncore.tenancy.service import TenancyService

SCREENING_ACTOR = "system:screening"


def movement_refusal(user: UserItem) -> ComplianceBlocked | None:
    """The refusal of a money movement by or to `user` while a screening match is unresolved (pending_review) or
    was confirmed; None for a clear user (or one never screened). Pure: no read, no audit (the caller audits)."""
    status = status_of(user.screening_status)
    if status is ScreeningStatus.CLEAR:
        return None
    case = user.screening_case_id or "none"
    if status is ScreeningStatus.PENDING_REVIEW:
        detail = (
            f"user {user.id} has a possible sanctions screening match under review in case {case}: "
            "no money moves to or from the user until a compliance officer decides it"
        )
    else:
        detail = (
            f"user {user.id} is a confirmed sanctions screening match (case {case}): no money moves to or from them"
        )
    return ComplianceBlocked(
        detail,
        errors=[{"loc": ["user_id"], "msg": f"screening_status {status.value}", "user_id": user.id, "case_id": case}],
    )


@dataclass(frozen=True, slots=True)
class BeneficiaryScreening:
    """A beneficiary screened clear or for review (a confirmed match raised ComplianceBlocked instead)."""

    name: str
    verdict: Verdict

    @property
    def review(self) -> bool:
        return self.verdict.status is ScreeningStatus.PENDING_REVIEW

    def check(self) -> dict[str, Any]:
        """What the posting records among its compliance checks."""
        return {
            "check": "beneficiary_screening",
            "name": self.name,
            "result": "review" if self.review else "pass",
            "lists_version": self.verdict.lists_version,
            "hits": [hit.record() for hit in self.verdict.hits],
        }

    def case_reason(self, subject_id: str) -> str:
        """A reason for the review case the caller opens about the held payment `subject_id`."""
        return case_reason(f"beneficiary {self.name!r} of {subject_id}", self.verdict, context="payment")


@dataclass(frozen=True, slots=True)
class _Lists:
    engine: ScreeningProvider
    watchlists: Sequence[Watchlist]
    version: str


class ScreeningGate:
    def __init__(
        self,
        engine: Callable[[], ScreeningProvider] | None = None,
        watchlists: TenantWatchlists | None = None,
        freezes: FreezeService | None = None,
        tenancy: TenancyService | None = None,
    ) -> None:
        # The screening provider (moncore.providers.screening): `engine` when given, else the tenant's configured
        # `screening_provider` (the kernel's own engine by default, built on first use, then cached).
        self._engine = engine
        self._tenancy = tenancy or TenancyService()
        self._watchlists = watchlists or TenantWatchlists()
        self._freezes = freezes or FreezeService()

    # ---------------------------------------------------------------- screening
    def lists(self, tenant_id: str) -> _Lists:
        engine = self._engine() if self._engine else self.provider(tenant_id)
        version, watchlist = self._watchlists.snapshot(tenant_id)
        return _Lists(engine, (watchlist,) if watchlist.entries else (), lists_version(engine.lists_digest, version))

    def provider(self, tenant_id: str) -> ScreeningProvider:
        return screening_provider(self._tenancy.tenant_config(tenant_id).screening_provider)

    def screen(
        self,
        lists: _Lists,
        name: str,
        *,
        country: str | None,
        date_of_birth: str | None = None,
        false_positives: Collection[tuple[str, str]] = (),
    ) -> Verdict:
        matches = lists.engine.screen(name, country=country, date_of_birth=date_of_birth, watchlists=lists.watchlists)
        return classify(matches, lists_version=lists.version, false_positives=false_positives)

    def screen_new_user(self, tenant_id: str, *, full_name: str, country: str, date_of_birth: str | None) -> Verdict:
        """A new user has no remembered false positive (its id is new), so every match counts."""
        return self.screen(self.lists(tenant_id), full_name, country=country, date_of_birth=date_of_birth)

    def refusal(self, verdict: Verdict, *, subject: str) -> ComplianceBlocked:
        confirmed = verdict.confirmed
        first = confirmed[0]
        return ComplianceBlocked(
            f"{subject} is refused: confirmed sanctions screening match with {first.list} entry {first.entry_id} "
            f"({first.name}) via {first.matched_name!r}, score {first.score:.4f}",
            errors=[
                {"loc": ["screening"], "msg": hit.why, "list": hit.list, "entry_id": hit.entry_id} for hit in confirmed
            ],
        )

    def new_user_case(
        self, caller: Caller, *, tenant_id: str, user_id: str, verdict: Verdict, at: str
    ) -> tuple[CaseItem, AuditEvent]:
        """The case a possible match at creation opens, written with the user (store.accounts.create_user)."""
        return self._case(caller, tenant_id, user_id, verdict, at, context="user creation")

    def screen_beneficiary(
        self, caller: Caller, *, subject_id: str, name: str, country: str | None
    ) -> BeneficiaryScreening:
        """Screen the external beneficiary of an outgoing payment `subject_id` (no date of birth is known; no false
        positive is remembered for a beneficiary: each payment is screened afresh). Raises ComplianceBlocked on a
        confirmed match, after auditing the refusal with the screening result; a possible match comes back with
        `review` true, for the caller to hold the payment and open a review case."""
        tenant_id = caller.require_tenant()
        verdict = self.screen(self.lists(tenant_id), name, country=country)
        if verdict.status is ScreeningStatus.CONFIRMED:
            refused = self.refusal(verdict, subject=f"beneficiary {name!r}")
            context = {"operation": "beneficiary.screen", "beneficiary": name, "screening": verdict.record()}
            audit_refusal(caller, refused, subject_id=subject_id, context=context)
            raise refused
        return BeneficiaryScreening(name, verdict)

    # ---------------------------------------------------------------- re-screening
    def rescreen_tenant(self, tenant_id: str, *, correlation_id: str = "rescreen") -> dict[str, Any]:
        """Screen again every user of the tenant whose lists version is not the current one (the job `rescreen`).
        Idempotent: a user is marked with the version it was screened against in the same write as its outcome, so a
        second run (or a run after a crash) screens only who is left; with nothing changed, nobody."""
        caller = Caller(tenant_id, SCREENING_ACTOR, "system", correlation_id)
        lists = self.lists(tenant_id)
        remembered = store.false_positives(tenant_id)
        result: dict[str, Any] = {
            "lists_version": lists.version,
            "unchanged": 0,
            "screened": 0,
            "cases_opened": [],
            "confirmed": [],
            "kept_pending": [],
            "suppressed": 0,
            "moved": [],
        }
        for user in store.users_of_tenant(tenant_id):
            if user.screening_lists_version == lists.version:
                result["unchanged"] += 1
                continue
            result["screened"] += 1
            self._rescreen(caller, user, lists, remembered.get(user.id, set()), result)
        return result

    def rescreen_user(self, caller: Caller, tenant_id: str, user_id: str) -> dict[str, Any]:
        """Screen one user again now (after a false-positive decision): the same rules as the job."""
        user = find_user_item(tenant_id, user_id)
        result: dict[str, Any] = {"cases_opened": [], "confirmed": [], "kept_pending": [], "suppressed": 0, "moved": []}
        if user is not None:
            lists = self.lists(tenant_id)
            remembered = store.false_positives(tenant_id, user_id).get(user_id, set())
            self._rescreen(caller, user, lists, remembered, result)
        return result

    def _rescreen(
        self,
        caller: Caller,
        user: UserItem,
        lists: _Lists,
        remembered: Collection[tuple[str, str]],
        result: dict[str, Any],
    ) -> None:
        current = status_of(user.screening_status)
        verdict = self.screen(
            lists, user.full_name, country=user.country, date_of_birth=user.date_of_birth, false_positives=remembered
        )
        result["suppressed"] += len(verdict.suppressed)
        now = now_rfc3339()
        update = store.ScreeningUpdate(
            tenant_id=user.tenant_id,
            user_id=user.id,
            expected_status=current.value,
            status=current.value,
            screened_at=now,
            lists_version=verdict.lists_version,
            expected_lists_version=user.screening_lists_version,
        )
        try:
            if verdict.status is ScreeningStatus.CONFIRMED and current is not ScreeningStatus.CONFIRMED:
                result["cases_opened"].append(self._confirm(caller, user, verdict, update, now))
                result["confirmed"].append(user.id)
            elif verdict.status is ScreeningStatus.PENDING_REVIEW and current is ScreeningStatus.CLEAR:
                case, case_audit = self._case(caller, user.tenant_id, user.id, verdict, now, context="re-screening")
                pending = replace(update, status=ScreeningStatus.PENDING_REVIEW.value, case_id=case.id)
                audit = self._audit(caller, user, "screening.pending_review", verdict, case.id)
                store.write_screening(pending, [audit], case=case, case_audit=case_audit)
                result["cases_opened"].append(case.id)
            elif current is ScreeningStatus.PENDING_REVIEW:
                # Its open case decides; the decision screens the user again (a no_action one suppressing what it
                # cleared), so nothing is recorded now and every run looks again until then.
                result["kept_pending"].append(user.id)
            else:  # clear and still clear, or confirmed (nothing more to do): remember the version screened
                store.write_screening(update, [])
        except (store.ScreeningMoved, AlreadyExists):
            result["moved"].append(user.id)  # changed meanwhile (or screened by a concurrent run): next run

    def _confirm(
        self, caller: Caller, user: UserItem, verdict: Verdict, update: store.ScreeningUpdate, now: str
    ) -> str:
        """A confirmed match found after creation: freeze the user (audited by FreezeService), then mark them
        confirmed and open a case for the record, in one transaction with its audit events."""
        if user.status == "ACTIVE":
            reason = f"confirmed sanctions screening match: {', '.join(hit_keys(verdict.confirmed))}"
            with suppress(InvalidStateTransition):  # frozen meanwhile: what matters is that it is frozen
                self._freezes.freeze_user(caller, user.tenant_id, user.id, reason=reason)
        case, case_audit = self._case(caller, user.tenant_id, user.id, verdict, now, context="re-screening")
        confirmed = replace(update, status=ScreeningStatus.CONFIRMED.value, case_id=case.id)
        audit = self._audit(caller, user, "screening.confirmed", verdict, case.id)
        store.write_screening(confirmed, [audit], case=case, case_audit=case_audit)
        return case.id

    # ---------------------------------------------------------------- case decisions
    def on_case_decided(
        self, caller: Caller, case: CaseItem, outcome: CaseOutcome, reason: str
    ) -> dict[str, Any] | None:
        """The screening side of a decision on a screening_hit case about a user (CaseService.decide runs it before
        closing the case; a retried decision runs it again, which changes nothing more)."""
        if case.kind != CaseKind.SCREENING_HIT.value or not case.subject_user_id:
            return None
        tenant_id, user_id = case.tenant_id, case.subject_user_id
        user = find_user_item(tenant_id, user_id)
        if user is None:
            return None
        kernel = Caller(tenant_id, SCREENING_ACTOR, "system", caller.correlation_id)  # acts after the officer
        current = status_of(user.screening_status)
        now = now_rfc3339()
        if outcome is CaseOutcome.NO_ACTION:
            hits = list(case.screening_hits or [])
            remembered = [
                store.false_positive_item(
                    tenant_id,
                    user_id,
                    str(hit["list"]),
                    str(hit["entry_id"]),
                    matched_name=str(hit.get("matched_name", "")),
                    case_id=case.id,
                    by=caller.actor,
                    at=now,
                )
                for hit in hits
            ]
            clears = current is ScreeningStatus.PENDING_REVIEW and user.screening_case_id == case.id
            payload = {
                "case_id": case.id,
                "user_id": user_id,
                "false_positives": sorted(f"{hit['list']}:{hit['entry_id']}" for hit in hits),
                "reason": reason,
                "screening_status": ScreeningStatus.CLEAR.value if clears else current.value,
            }
            audit = audit_event(
                tenant_id=tenant_id,
                action="screening.false_positive",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=user_id,
                payload=payload,
            )
            update = store.ScreeningUpdate(
                tenant_id=tenant_id,
                user_id=user_id,
                expected_status=current.value,
                status=ScreeningStatus.CLEAR.value if clears else current.value,
                lists_version="" if clears else None,  # screened again just below, and by the next job run
                clear_case=clears,
            )
            self._write(update, [audit], remembered=remembered)
            rescreened = self.rescreen_user(kernel, tenant_id, user_id) if clears else None
            after = find_user_item(tenant_id, user_id)
            return {
                "user_id": user_id,
                "false_positives": payload["false_positives"],
                "screening_status": status_of(after.screening_status if after else None).value,
                "cases_opened": (rescreened or {}).get("cases_opened", []),
            }
        if outcome in (CaseOutcome.FROZEN, CaseOutcome.REPORTED):
            audit = audit_event(
                tenant_id=tenant_id,
                action="screening.confirmed",
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=user_id,
                payload={"case_id": case.id, "user_id": user_id, "outcome": outcome.value, "reason": reason},
            )
            update = store.ScreeningUpdate(
                tenant_id=tenant_id,
                user_id=user_id,
                expected_status=current.value,
                status=ScreeningStatus.CONFIRMED.value,
                case_id=case.id,
            )
            self._write(update, [audit])
            return {"user_id": user_id, "screening_status": ScreeningStatus.CONFIRMED.value}
        return None

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _write(update: store.ScreeningUpdate, audits: Sequence[AuditEvent], **extra: Any) -> None:
        try:
            store.write_screening(update, audits, **extra)
        except store.ScreeningMoved:
            raise ConcurrencyConflict(
                f"the screening status of user {update.user_id} changed meanwhile; read the case again and retry"
            ) from None

    @staticmethod
    def _case(
        caller: Caller, tenant_id: str, user_id: str, verdict: Verdict, at: str, *, context: str
    ) -> tuple[CaseItem, AuditEvent]:
        """A screening_hit case about the user. Its id derives from the user, the lists version and the hits, so
        the same screening can only ever open it once."""
        case_id = derived_id("case", tenant_id, "screening", user_id, verdict.lists_version, *hit_keys(verdict.hits))
        reason = case_reason(f"user {user_id}", verdict, context=context)
        return new_case(
            caller,
            case_id=case_id,
            tenant_id=tenant_id,
            kind=CaseKind.SCREENING_HIT,
            reason=reason,
            subject_user_id=user_id,
            opened_by=SCREENING_ACTOR,
            context={"screening": verdict.record()},
            at=at,
            screening_hits=[hit.record() for hit in verdict.hits],
        )

    @staticmethod
    def _audit(caller: Caller, user: UserItem, action: str, verdict: Verdict, case_id: str) -> AuditEvent:
        return audit_event(
            tenant_id=user.tenant_id,
            action=action,
            actor=SCREENING_ACTOR,
            correlation_id=caller.correlation_id,
            subject_id=user.id,
            payload={"user_id": user.id, "case_id": case_id, "screening": verdict.record()},
        )


@cache
def default_gate() -> ScreeningGate:
    """One gate per process (the engine it uses is built once per process anyway)."""
    return ScreeningGate()
