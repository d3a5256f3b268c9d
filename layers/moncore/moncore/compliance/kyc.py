"""KYC: start a verification with the tenant's provider, take its advisory result from a signed webhook, and let the
kernel alone decide the user's tier and KYC status (docs/kyc.md; the rules: moncore.domain.kyc).

    POST /v1/users/{id}/kyc-checks  -> provider.start_verification -> check PENDING (202, with the provider reference)
    POST /webhooks/{provider} (no API key; HMAC signature) -> inbox (stored, deduplicated)
        -> the check it names (reference = tenant:check id, confirmed by the provider reference we stored)
        -> adjudicate -> one transaction: check COMPLETED + user tier/KYC attributes + audit event
        -> referred: a kyc_review case (id derived from the check: opened once)

The tenant of a webhook is never taken from an API key (there is none) nor trusted from the payload alone: the
reference only says where to look, and the event is applied only if the check found there was started with this
provider and carries the provider reference the event names. Anything else is stored as UNMATCHED and answered 404
(a provider retries; a result that raced ahead of our own write of the check is then applied).

Also here: the `tier_enforcement` job (TierEnforcement), which moves users with expired evidence back to tier_0 and
opens a case for users whose balances exceed their tier's cap.

Errors: NotFound, ValidationFailed, IdempotencyKeyReused, ProviderUnavailable (retryable), InvalidSignature,
AlreadyExists (a provider event id re-sent with other bytes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from moncore.compliance.cases import CaseService
from moncore.domain.audit import audit_event
from moncore.domain.canonical import sha256_hex
from moncore.domain.cases import CaseKind
from moncore.domain.clock import now_rfc3339, parse_instant, utc_now
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    InvalidStateTransition,
    NotFound,
)
from moncore.domain.ids import derived_id
from moncore.domain.kyc import Adjudication, Advisory, Decision, KycStatus, adjudicate, check_level, rank
from moncore.domain.limits import DEFAULT_TIER, tier_limits
from moncore.domain.money import stored_minor
from moncore.domain.transactions import AccountKind
from moncore.ledger import views
from moncore.providers import webhooks
from moncore.providers.calls import provider_call
from moncore.providers.kyc import (
    COMPLETED,
    Applicant,
    KycEvent,
    VerificationRequest,
    known_provider,
    kyc_provider,
    parse_reference,
)
from moncore.store import accounts as account_store
from moncore.store import derived as derived_store
from moncore.store import kyc as store
from moncore.store import webhooks as inbox
from moncore.store.balances import balance_key
from moncore.store.models import KycCheckItem, UserItem, WebhookEventItem
from moncore.tenancy.service import TenancyService

DOMAIN = "kyc"
KYC_ACTOR = "system:kyc"  # the kernel adjudicates; the provider only advised
JOB_ACTOR = "system:jobs"
_DECIDE_ATTEMPTS = 5  # a concurrent tier change (another check, the job) makes us decide again from the new tier


class KycService:
    def __init__(self, tenancy: TenancyService | None = None, cases: CaseService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._cases = cases or CaseService()

    # ---------------------------------------------------------------- partner plane
    def start_check(self, caller: Caller, request: RequestIdentity, user_id: str, *, level: str) -> Result:
        """Ask the tenant's provider to verify the user for `level`; the result comes later by webhook."""
        tenant_id = caller.require_tenant()
        check_level(level)
        check_id = derived_id("kyc", tenant_id, request.idempotency_key)
        existing = store.find_check(tenant_id, check_id)
        if existing is not None:
            return _replay(existing, request)
        user = account_store.find_user_item(tenant_id, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        provider = kyc_provider(self._tenancy.tenant_config(tenant_id).kyc_provider)
        applicant = Applicant(user.external_ref, user.full_name, user.country, user.date_of_birth)
        # The provider first: its reference derives from our check id, so a retry after a failure below finds the
        # same verification; a result racing ahead of the write below is answered 404 and redelivered.
        with provider_call(caller, provider=provider.name, call="start_verification", subject_id=check_id):
            started = provider.start_verification(VerificationRequest(tenant_id, user_id, check_id, level, applicant))
        now = now_rfc3339()
        item = KycCheckItem(
            store.check_key(tenant_id, check_id),
            id=check_id,
            tenant_id=tenant_id,
            user_id=user_id,
            level=level,
            status=store.PENDING,
            provider=started.provider,
            provider_ref=started.provider_ref,
            request_hash=request.request_hash,
            requested_by=caller.actor,
            correlation_id=caller.correlation_id,
            created_at=now,
            updated_at=now,
        )
        audit = audit_event(
            tenant_id=tenant_id,
            action="kyc_check.started",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=check_id,
            payload=check_view(item),
        )
        try:
            store.create_check(item, audit)
        except AlreadyExists:
            found = store.find_check(tenant_id, check_id)
            if found is None:
                raise
            return _replay(found, request)
        return Result(check_view(item))

    def get_check(self, caller: Caller, user_id: str, check_id: str) -> dict[str, Any]:
        item = store.find_check(caller.require_tenant(), check_id)
        if item is None or item.user_id != user_id:
            raise NotFound(f"KYC check {check_id} not found")
        return check_view(item)

    # ---------------------------------------------------------------- admin plane
    def downgrade(self, caller: Caller, tenant_id: str, user_id: str, *, tier: str, reason: str) -> dict[str, Any]:
        """An officer lowers a user's tier (a tier only goes up through a KYC check): conditional on the tier read,
        audited as `user.tier_downgraded`. 409 when the user is already at or below `tier`. Balances above the new
        tier's cap are flagged by the next tier_enforcement run."""
        user = account_store.find_user_item(tenant_id, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        if rank(tier) < 0 or rank(tier) >= rank(user.tier):
            raise InvalidStateTransition(
                f"user {user_id} is {user.tier}: an admin may only lower the tier (it rises only through a KYC check)"
            )
        audit = audit_event(
            tenant_id=tenant_id,
            action="user.tier_downgraded",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=user_id,
            payload={"user_id": user_id, "from": user.tier, "to": tier, "reason": reason},
        )
        try:
            store.downgrade(
                tenant_id,
                user_id,
                expected_tier=user.tier,
                expected_expiry=user.kyc_expires_at,
                actions=[UserItem.tier.set(tier)],
                audit=audit,
            )
        except store.UserMoved:
            raise ConcurrencyConflict(f"user {user_id} changed meanwhile; read it again and retry") from None
        found = account_store.find_user_item(tenant_id, user_id)
        return views.user_view(found or user)

    # ---------------------------------------------------------------- webhooks
    def receive_webhook(
        self, provider: str, raw_body: bytes, signature: str | None, correlation_id: str, *, now_s: int | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One delivery to /webhooks/{provider}: (HTTP status, body). Refusals raise (see module docs)."""
        delivery = webhooks.Delivery(DOMAIN, provider, raw_body, signature, correlation_id)
        received = webhooks.receive(
            delivery,
            known_provider=known_provider,
            event_id_of=lambda payload: kyc_provider(provider).parse_event(payload).event_id,
            now_s=now_s,
        )
        answer = {"event_id": received.item.event_id, "provider": provider}
        if received.settled:
            # A redelivery of an event already acted on (or ignored): it changes nothing.
            return 200, answer | {"status": "duplicate", "first_outcome": received.item.status.lower()}
        event = kyc_provider(provider).parse_event(received.payload)
        return self._process(received.item, event, provider, correlation_id, answer)

    def _process(
        self, record: WebhookEventItem, event: KycEvent, provider: str, correlation_id: str, answer: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if event.kind != COMPLETED or event.advisory is None:
            inbox.settle(record, inbox.IGNORED, now_rfc3339(), reason=f"event type {event.kind} is not acted on")
            return 200, answer | {"status": "ignored", "reason": f"event type {event.kind} is not acted on"}
        found = parse_reference(event.reference)
        check = store.find_check(*found) if found is not None else None
        if check is None or check.provider != provider or check.provider_ref != event.provider_ref:
            reason = "no KYC check matches this event's reference and provider reference"
            inbox.settle(record, inbox.UNMATCHED, now_rfc3339(), reason=reason)
            raise NotFound(f"{reason}: stored; redeliver it later if the check was only just started")
        if check.status == store.COMPLETED and check.event_id != event.event_id:
            reason = f"the check was already decided from event {check.event_id}"
            inbox.settle(record, inbox.IGNORED, now_rfc3339(), reason=reason, tenant_id=check.tenant_id)
            return 200, answer | {"status": "ignored", "reason": reason, "check_id": check.id}
        if check.status == store.PENDING:
            check = self._decide(check, event, event.advisory, correlation_id)
        if check.decision == Decision.REFERRED.value:
            self._open_review_case(check, correlation_id)  # once: a retried event finds the same case
            check = store.find_check(check.tenant_id, check.id) or check
        outcome = {"check_id": check.id, "decision": check.decision, **(check.adjudication or {})}
        outcome["case_id"] = check.case_id
        inbox.settle(
            record, inbox.PROCESSED, now_rfc3339(), tenant_id=check.tenant_id, subject_id=check.id, outcome=outcome
        )
        return 200, answer | {"status": "processed", **outcome}

    def _decide(self, check: KycCheckItem, event: KycEvent, advisory: Advisory, correlation_id: str) -> KycCheckItem:
        """Adjudicate and write the check, the user and the audit event together; decide again when the user's
        tier moved meanwhile."""
        for _ in range(_DECIDE_ATTEMPTS):
            user = account_store.find_user_item(check.tenant_id, check.user_id)
            if user is None:
                raise NotFound(f"user {check.user_id} not found")
            now = utc_now()
            decided = adjudicate(
                level=check.level, current_tier=user.tier, current_status=user.kyc_status, advisory=advisory, now=now
            )
            at = now_rfc3339()
            try:
                store.complete_check(
                    _completion(check, user, event, advisory, decided, at),
                    audit_event(
                        tenant_id=check.tenant_id,
                        action="kyc_check.adjudicated",
                        actor=KYC_ACTOR,
                        correlation_id=correlation_id,
                        subject_id=check.id,
                        payload={
                            "check_id": check.id,
                            "user_id": check.user_id,
                            "level": check.level,
                            "provider": check.provider,
                            "provider_ref": check.provider_ref,
                            "event_id": event.event_id,
                            "advisory": advisory.record(),
                            "advisory_sha256": advisory.sha256,
                            **decided.record(),
                        },
                    ),
                )
            except store.UserMoved:
                continue
            except store.CheckSettled:
                break  # another delivery decided it first
            break
        else:
            raise ConcurrencyConflict("the user's tier kept changing; nothing was written, redeliver the event")
        settled = store.find_check(check.tenant_id, check.id)
        if settled is None:
            raise NotFound(f"KYC check {check.id} not found")
        return settled

    def _open_review_case(self, check: KycCheckItem, correlation_id: str) -> None:
        reasons = [r for r in (check.adjudication or {}).get("reasons", []) if "risk_flag" in r]
        case = self._cases.open_case(
            Caller(check.tenant_id, KYC_ACTOR, "system", correlation_id),
            _kernel_request(f"kyc:{check.id}:review", {"check_id": check.id}),
            tenant_id=check.tenant_id,
            kind=CaseKind.KYC_REVIEW.value,
            reason=f"KYC check {check.id} ({check.level}) referred: {', '.join(reasons) or 'risk flags'}; no upgrade",
            subject_user_id=check.user_id,
        )
        if check.case_id != case.body["id"]:
            store.set_case(check.tenant_id, check.id, str(case.body["id"]))


def _completion(
    check: KycCheckItem, user: UserItem, event: KycEvent, advisory: Advisory, decided: Adjudication, at: str
) -> store.Completion:
    check_actions = [
        KycCheckItem.status.set(store.COMPLETED),
        KycCheckItem.decision.set(decided.decision.value),
        KycCheckItem.completed_at.set(at),
        KycCheckItem.updated_at.set(at),
        KycCheckItem.event_id.set(event.event_id),
        KycCheckItem.advisory.set(advisory.record()),
        KycCheckItem.advisory_sha256.set(advisory.sha256),
        KycCheckItem.adjudication.set(decided.record()),
    ]
    user_actions = [UserItem.kyc_status.set(decided.kyc_status.value), UserItem.kyc_checked_at.set(at)]
    if decided.tier_after != user.tier:
        user_actions.append(UserItem.tier.set(decided.tier_after))
    if decided.expires_at is not None:
        user_actions += [UserItem.kyc_expires_at.set(decided.expires_at), UserItem.kyc_check_id.set(check.id)]
    return store.Completion(check.tenant_id, check.id, check.user_id, user.tier, check_actions, user_actions)


def _replay(item: KycCheckItem, request: RequestIdentity) -> Result:
    """The check this idempotency key created before (its idempotency record expired or was lost)."""
    if item.request_hash != request.request_hash:
        raise IdempotencyKeyReused(
            "Idempotency-Key was used with a different request (another user or level)",
            errors=[{"loc": ["body", "level"], "msg": "differs from the original request"}],
        )
    return Result(check_view(item), replayed=True)


def _kernel_request(key: str, body: dict[str, Any]) -> RequestIdentity:
    return RequestIdentity(idempotency_key=key, request_hash=sha256_hex(body), fingerprint={})


def check_view(item: KycCheckItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "user_id": item.user_id,
        "level": item.level,
        "status": item.status.lower(),
        "provider": item.provider,
        "provider_ref": item.provider_ref,
        "decision": item.decision,
        "result": item.adjudication,
        "advisory": item.advisory,
        "advisory_sha256": item.advisory_sha256,
        "case_id": item.case_id,
        "created_at": item.created_at,
        "completed_at": item.completed_at,
    }


# -------------------------------------------------------------------- the tier_enforcement job
class TierEnforcement:
    """Daily, per tenant: (1) users whose KYC evidence expired go back to tier_0 (conditional on the tier and expiry
    read, with an audit event); (2) every user whose posted balance in some account exceeds the balance cap of the
    tier they now hold (after a downgrade, or a tenant lowering its limits) gets one `tier_limit_excess` case per
    (user, tier, caps exceeded), opened once however often the job runs. Nothing moves money: a compliance officer
    decides (freeze, ask the customer to withdraw, ...)."""

    def __init__(self, tenancy: TenancyService | None = None, cases: CaseService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()
        self._cases = cases or CaseService()

    def run(self, tenant_id: str, *, now: str | None = None, correlation_id: str = "") -> dict[str, Any]:
        instant = now_rfc3339() if now is None else parse_instant(now, field="now")
        downgraded: list[str] = []
        for user in store.users_with_expired_kyc(tenant_id, instant):
            if self._downgrade(user, instant, correlation_id):
                downgraded.append(user.id)
        flagged, checked = self._flag_caps(tenant_id, correlation_id)
        return {"now": instant, "downgraded": downgraded, "flagged": flagged, "users_checked": checked}

    def _downgrade(self, user: UserItem, now: str, correlation_id: str) -> bool:
        audit = audit_event(
            tenant_id=user.tenant_id,
            action="user.tier_downgraded",
            actor=JOB_ACTOR,
            correlation_id=correlation_id,
            subject_id=user.id,
            payload={
                "user_id": user.id,
                "from": user.tier,
                "to": DEFAULT_TIER,
                "reason": "kyc_expired",
                "kyc_expires_at": user.kyc_expires_at,
                "kyc_check_id": user.kyc_check_id,
                "now": now,
            },
        )
        actions = [UserItem.tier.set(DEFAULT_TIER), UserItem.kyc_status.set(KycStatus.EXPIRED.value)]
        try:
            store.downgrade(
                user.tenant_id,
                user.id,
                expected_tier=user.tier,
                expected_expiry=user.kyc_expires_at,
                actions=actions,
                audit=audit,
            )
        except store.UserMoved:
            return False  # renewed (or changed) meanwhile: the next run sees the new state
        return True

    def _flag_caps(self, tenant_id: str, correlation_id: str) -> tuple[list[dict[str, Any]], int]:
        config = self._tenancy.get_tenant(tenant_id)  # not the cached one: a limit change made today applies today
        accounts = [a for a in account_store.tenant_accounts(tenant_id) if a.kind == AccountKind.USER.value]
        keys = {a.id: [balance_key(tenant_id, a.id, s) for s in range(max(1, int(a.shards or 1)))] for a in accounts}
        balances = derived_store.balance_items([key for group in keys.values() for key in group])
        users = account_store.find_user_items(tenant_id, [a.user_id or "" for a in accounts])
        exceeded: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for account in accounts:
            user = users.get(account.user_id or "")
            if user is None:
                continue
            posted = sum(stored_minor(balances[k].posted_minor) for k in keys[account.id] if k in balances)
            cap = tier_limits(user.tier, account.currency, config.tier_limits).balance_cap_minor
            if cap is not None and posted > cap:
                exceeded[user.id].append(
                    {"account_id": account.id, "currency": account.currency, "posted_minor": posted, "cap_minor": cap}
                )
        flagged = [
            self._open_excess_case(tenant_id, users[uid], found, correlation_id) for uid, found in exceeded.items()
        ]
        return flagged, len(users)

    def _open_excess_case(
        self, tenant_id: str, user: UserItem, found: list[dict[str, Any]], correlation_id: str
    ) -> dict[str, Any]:
        caps = sorted((f["account_id"], f["currency"], f["cap_minor"]) for f in found)
        # One case per user, tier and set of caps exceeded: the same situation never opens a second case; a new
        # downgrade or limit change (other caps) does.
        key = f"tier_enforcement:{user.id}:{user.tier}:{sha256_hex([list(c) for c in caps])[:32]}"
        detail = "; ".join(f"{f['account_id']} {f['posted_minor']} > {f['cap_minor']} {f['currency']}" for f in found)
        case = self._cases.open_case(
            Caller(tenant_id, JOB_ACTOR, "system", correlation_id),
            _kernel_request(key, {"user_id": user.id, "tier": user.tier, "caps": [list(c) for c in caps]}),
            tenant_id=tenant_id,
            kind=CaseKind.TIER_LIMIT_EXCESS.value,
            reason=f"posted balance above the {user.tier} balance cap: {detail}"[:500],
            subject_user_id=user.id,
        )
        return {"user_id": user.id, "tier": user.tier, "case_id": case.body["id"], "exceeded": found}
