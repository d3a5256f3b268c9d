"""Tenants' custom watchlists: entries a tenant's compliance team adds (people or organisations it will not serve),
screened together with the OFAC and UN lists for that tenant's users, beneficiaries and checks (list name
`tenant:watchlist`).

Admin routes (compliance_officer or admin): add an entry (201, Idempotency-Key; the entry id derives from the key),
list them with the watchlist's version, deactivate one (it stays on record, inactive, and no longer matches). Every
change bumps the watchlist's version in the same transaction, with its audit event: the version is part of the
lists version users are screened against, so the next re-screening job screens every user of the tenant again
(docs/screening.md).

Errors: NotFound (tenant, entry), InvalidStateTransition (entry already inactive).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from moncore.compliance.screening.lists import Watchlist
from moncore.domain.audit import audit_event
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import AlreadyExists, InvalidStateTransition, NotFound
from moncore.domain.ids import derived_id
from moncore.store import screening as store
from moncore.store.models import WatchlistItem
from moncore.store.tenancy import find_tenant_item

TENANT_WATCHLIST = "watchlist"  # Watchlist.from_records names its entries' list "tenant:watchlist"


def watchlist_of(items: Iterable[WatchlistItem]) -> Watchlist:
    """The active entries as the engine's Watchlist."""
    records = [
        {
            "id": item.entry_id,
            "name": item.name,
            "aliases": list(item.aliases or []),
            "party": item.party or "individual",
            **({"date_of_birth": item.date_of_birth} if item.date_of_birth else {}),
            **({"country": item.country} if item.country else {}),
        }
        for item in items
        if item.active
    ]
    return Watchlist.from_records(TENANT_WATCHLIST, records)


class TenantWatchlists:
    """The stored watchlists (a screening.service.WatchlistSource): one Query per call, no cache, so a change is
    screened against from the very next request."""

    def snapshot(self, tenant_id: str) -> tuple[int, Watchlist]:
        version, items = store.read_watchlist(tenant_id)
        return version, watchlist_of(items)

    def for_tenant(self, tenant_id: str) -> Sequence[Watchlist]:
        _, watchlist = self.snapshot(tenant_id)
        return (watchlist,) if watchlist.entries else ()


class WatchlistService:
    def add_entry(
        self,
        caller: Caller,
        request: RequestIdentity,
        tenant_id: str,
        *,
        name: str,
        reason: str,
        aliases: Sequence[str] = (),
        country: str | None = None,
        date_of_birth: str | None = None,
        party: str = "individual",
    ) -> Result:
        if find_tenant_item(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        entry_id = derived_id("wle", tenant_id, request.idempotency_key)
        now = now_rfc3339()
        item = WatchlistItem(
            store.watchlist_key(tenant_id),
            store.entry_sk(entry_id),
            tenant_id=tenant_id,
            entry_id=entry_id,
            name=name,
            aliases=list(aliases),
            country=country,
            date_of_birth=date_of_birth,
            party=party,
            reason=reason,
            active=True,
            created_by=caller.actor,
            created_at=now,
        )
        audit = audit_event(
            tenant_id=tenant_id,
            action="screening.watchlist_entry_added",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=entry_id,
            payload=entry_view(item),
        )
        try:
            store.add_watchlist_entry(item, audit)
        except AlreadyExists:
            return Result(self.get_entry(tenant_id, entry_id), replayed=True)
        return Result(entry_view(item))

    def get_entry(self, tenant_id: str, entry_id: str) -> dict[str, Any]:
        item = store.find_watchlist_entry(tenant_id, entry_id)
        if item is None:
            raise NotFound(f"watchlist entry {entry_id} not found")
        return entry_view(item)

    def list_entries(self, tenant_id: str, *, include_inactive: bool) -> dict[str, Any]:
        if find_tenant_item(tenant_id) is None:
            raise NotFound(f"tenant {tenant_id} not found")
        version, items = store.read_watchlist(tenant_id)
        shown = [entry_view(item) for item in items if include_inactive or item.active]
        return {"tenant_id": tenant_id, "version": version, "items": shown}

    def deactivate(self, caller: Caller, tenant_id: str, entry_id: str, *, reason: str) -> dict[str, Any]:
        current = store.find_watchlist_entry(tenant_id, entry_id)
        if current is None:
            raise NotFound(f"watchlist entry {entry_id} not found")
        if not current.active:
            raise InvalidStateTransition(f"watchlist entry {entry_id} is already inactive")
        audit = audit_event(
            tenant_id=tenant_id,
            action="screening.watchlist_entry_deactivated",
            actor=caller.actor,
            correlation_id=caller.correlation_id,
            subject_id=entry_id,
            payload={"entry_id": entry_id, "name": current.name, "reason": reason},
        )
        try:
            store.deactivate_watchlist_entry(tenant_id, entry_id, by=caller.actor, reason=reason, audit=audit)
        except store.EntryMoved:
            raise InvalidStateTransition(f"watchlist entry {entry_id} is already inactive") from None
        return self.get_entry(tenant_id, entry_id)


def entry_view(item: WatchlistItem) -> dict[str, Any]:
    return {
        "id": item.entry_id,
        "tenant_id": item.tenant_id,
        "list": f"tenant:{TENANT_WATCHLIST}",
        "name": item.name,
        "aliases": list(item.aliases or []),
        "party": item.party,
        "country": item.country,
        "date_of_birth": item.date_of_birth,
        "reason": item.reason,
        "status": "active" if item.active else "inactive",
        "created_by": item.created_by,
        "created_at": item.created_at,
        "deactivated_by": item.deactivated_by,
        "deactivated_at": item.deactivated_at,
        "deactivation_reason": item.deactivation_reason,
    }
