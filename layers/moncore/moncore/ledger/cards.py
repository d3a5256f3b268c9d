"""Cards: issue a card for a user's account through the tenant's card issuer, read it, freeze, unfreeze and close it
(docs/providers.md, "Cards"). Payments made with the card arrive from the processor by webhook
(moncore.ledger.card_events).

    POST /v1/cards {user_id, account_id}  -> capability card_issuing (issuer-gated: 403 until live)
        -> the account is the user's, ACTIVE -> issuer.issue_card (its reference derives from our card id)
        -> ONE transaction: card ACTIVE + token lookup + audit event `card.issued`           201 card
    POST /v1/cards/{id}/freeze|unfreeze|close {reason?}
        -> the kernel's status first (conditional on the status read, with its audit event): a frozen card's
           authorisations are declined from that moment, whatever the issuer does
        -> then the issuer; if it fails, 503 provider_unavailable and the card stays in its new status with
           `issuer.status` still the old one; asking again (any time) re-sends it. Asking for the status the card
           already has is not an error (200): it only makes sure the issuer agrees.

The card id derives from (tenant, Idempotency-Key), and the sandbox issuer's token from the card id, so a retried
issue after an issuer failure finds the same card; a replay after the idempotency record expired answers from the
stored card (another body with the same key: 409). Never stored: the PAN (the issuer keeps it; we keep its token and
last four digits).

Errors: NotFound, ValidationFailed, AccountNotActive, CapabilityDisabled, InvalidStateTransition,
IdempotencyKeyReused, ProviderUnavailable (retryable), ConcurrencyConflict (retryable).
"""

from __future__ import annotations

from typing import Any

from moncore.domain.audit import audit_event
from moncore.domain.capabilities import Capability
from moncore.domain.cards import CardAction, CardStatus, plan_status_change
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import (
    AccountNotActive,
    AlreadyExists,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    NotFound,
    ProviderUnavailable,
    ValidationFailed,
)
from moncore.domain.ids import derived_id
from moncore.domain.transactions import AccountKind
from moncore.providers.calls import provider_call
from moncore.providers.cards import CardIssuer, CardRef, IssueCardRequest, card_issuer
from moncore.store import accounts as account_store
from moncore.store import cards as card_store
from moncore.store.models import CardItem, CardTokenItem
from moncore.tenancy.service import TenancyService

_STATUS_ATTEMPTS = 5
_AUDIT_ACTION = {
    CardAction.FREEZE: "card.frozen",
    CardAction.UNFREEZE: "card.unfrozen",
    CardAction.CLOSE: "card.closed",
}


class CardService:
    def __init__(self, tenancy: TenancyService | None = None) -> None:
        self._tenancy = tenancy or TenancyService()

    def issue_card(self, caller: Caller, request: RequestIdentity, *, user_id: str, account_id: str) -> Result:
        tenant_id = caller.require_tenant()
        self._tenancy.require_capability(tenant_id, Capability.CARD_ISSUING, caller)
        card_id = derived_id("crd", tenant_id, request.idempotency_key)
        existing = card_store.find_card(tenant_id, card_id)
        if existing is not None:
            return _replay(existing, request)
        user = account_store.find_user_item(tenant_id, user_id)
        account = account_store.find_account_item(tenant_id, account_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        if account is None or account.kind != AccountKind.USER.value:
            raise NotFound(f"account {account_id} not found")
        if account.user_id != user_id:
            raise ValidationFailed(
                f"account {account_id} does not belong to user {user_id}",
                errors=[{"loc": ["body", "account_id"], "msg": "not an account of this user"}],
            )
        if account.status != "ACTIVE" or user.status != "ACTIVE":
            raise AccountNotActive(f"account {account_id} or its user is frozen: no card can be issued on it")
        issuer = self._issuer(tenant_id)
        # The issuer first: its reference derives from our card id, so a retry after a failure below finds the
        # same card at the issuer (no second card is ever issued for one key).
        with provider_call(caller, provider=issuer.name, call="issue_card", subject_id=card_id):
            issued = issuer.issue_card(IssueCardRequest(tenant_id, card_id, user_id, user.full_name, account.currency))
        now = now_rfc3339()
        item = CardItem(
            card_store.card_key(tenant_id, card_id),
            id=card_id,
            tenant_id=tenant_id,
            user_id=user_id,
            account_id=account_id,
            currency=account.currency,
            status=CardStatus.ACTIVE.value,
            issuer=issued.provider,
            token=issued.token,
            last4=issued.last4,
            exp_month=issued.exp_month,
            exp_year=issued.exp_year,
            issuer_status=CardStatus.ACTIVE.value,
            request_hash=request.request_hash,
            created_by=caller.actor,
            correlation_id=caller.correlation_id,
            created_at=now,
            updated_at=now,
            tenant_kind=card_store.tenant_kind(tenant_id, card_store.CARD_KIND),
            sort_key=f"{now}#{card_id}",
        )
        token = CardTokenItem(
            card_store.token_key(issued.provider, issued.token),
            tenant_id=tenant_id,
            card_id=card_id,
            account_id=account_id,
            issuer=issued.provider,
            created_at=now,
        )
        audit = audit_event(
            tenant_id=tenant_id,
            action="card.issued",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=card_id,
            payload=card_view(item),
        )
        try:
            card_store.create_card(item, token, audit)
        except AlreadyExists:
            found = card_store.find_card(tenant_id, card_id)
            if found is None:
                raise
            return _replay(found, request)
        return Result(card_view(item))

    def get_card(self, caller: Caller, card_id: str) -> dict[str, Any]:
        return card_view(self._card(caller.require_tenant(), card_id))

    def change_status(self, caller: Caller, card_id: str, action: CardAction, *, reason: str | None) -> dict[str, Any]:
        """Freeze, unfreeze or close the card: the kernel first, then the issuer (see the module docstring)."""
        tenant_id = caller.require_tenant()
        for _ in range(_STATUS_ATTEMPTS):
            card = self._card(tenant_id, card_id)
            target = plan_status_change(CardStatus(card.status), action)
            if target is None:
                break  # already there: make sure the issuer agrees
            at = now_rfc3339()
            audit = audit_event(
                tenant_id=tenant_id,
                action=_AUDIT_ACTION[action],
                actor=caller.actor,
                correlation_id=caller.correlation_id,
                subject_id=card_id,
                payload={"card_id": card_id, "from": card.status, "to": target.value, "reason": reason},
            )
            try:
                card_store.change_status(card, target, reason=reason, actor=caller.actor, at=at, audit=audit)
            except card_store.CardMoved:
                continue
            break
        else:
            raise ConcurrencyConflict(f"card {card_id} kept changing; read it and retry")
        card = self._card(tenant_id, card_id)
        if card.issuer_status != card.status:
            self._tell_issuer(caller, card, CardStatus(card.status))
            card = self._card(tenant_id, card_id)
        return card_view(card)

    # ---------------------------------------------------------------- internals
    def _issuer(self, tenant_id: str) -> CardIssuer:
        return card_issuer(self._tenancy.tenant_config(tenant_id).card_issuer)

    def _tell_issuer(self, caller: Caller, card: CardItem, status: CardStatus) -> None:
        ref = CardRef(card.tenant_id, card.id, card.token)
        issuer = card_issuer(card.issuer)
        call = {CardStatus.FROZEN: "freeze_card", CardStatus.ACTIVE: "unfreeze_card"}.get(status, "close_card")
        try:
            with provider_call(caller, provider=issuer.name, call=call, subject_id=card.id):
                if status is CardStatus.FROZEN:
                    issuer.freeze_card(ref)
                elif status is CardStatus.ACTIVE:
                    issuer.unfreeze_card(ref)
                else:
                    issuer.close_card(ref)
        except ProviderUnavailable as failed:
            raise ProviderUnavailable(
                f"card {card.id} is {status.value.lower()} in MonCore (authorisations follow that at once) but the "
                f"issuer could not be told: {failed.detail} Ask again to send it."
            ) from None
        card_store.confirm_issuer_status(card, status, now_rfc3339())

    @staticmethod
    def _card(tenant_id: str, card_id: str) -> CardItem:
        card = card_store.find_card(tenant_id, card_id)
        if card is None:
            raise NotFound(f"card {card_id} not found")
        return card


def _replay(card: CardItem, request: RequestIdentity) -> Result:
    if card.request_hash != request.request_hash:
        raise IdempotencyKeyReused(
            "Idempotency-Key was used with a different request (another user or account)",
            errors=[{"loc": ["body"], "msg": "differs from the original request"}],
        )
    return Result(card_view(card), replayed=True)


def card_view(card: CardItem) -> dict[str, Any]:
    return {
        "id": card.id,
        "user_id": card.user_id,
        "account_id": card.account_id,
        "currency": card.currency,
        "status": card.status.lower(),
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
        "issuer": {"name": card.issuer, "token": card.token, "status": card.issuer_status.lower()},
        "status_reason": card.status_reason,
        "status_changed_at": card.status_changed_at,
        "created_at": card.created_at,
        "updated_at": card.updated_at,
    }
