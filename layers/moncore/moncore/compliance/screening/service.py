"""`POST /v1/screening/checks`: screen one name for a tenant, audited.

A check creates nothing and moves nothing, so it is not idempotent (a repeat is a new check, and is audited as one).
The audit event (`screening.checked`) keeps the provider, the query and, per match, the list, entry id, score and
decision, so a regulator can see who screened what and what the provider answered; the explanations are not stored
(they can be recomputed from the same lists and code). The provider is the tenant's `screening_provider`
(moncore.providers.screening; by default the kernel's own engine).

Tenant watchlists come from a WatchlistSource: by default the tenant's stored watchlist (watchlists.py, managed
through the admin routes), read on every check, so an entry added a moment ago is screened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from moncore.compliance.screening.lists import Watchlist
from moncore.compliance.screening.watchlists import TenantWatchlists
from moncore.domain.audit import audit_event
from moncore.domain.context import Caller
from moncore.providers.screening import ScreeningProvider, screening_provider
from moncore.store import screening as store
from moncore.tenancy.service import TenancyService


class WatchlistSource(Protocol):
    def for_tenant(self, tenant_id: str) -> Sequence[Watchlist]: ...


class NoTenantWatchlists:
    def for_tenant(self, tenant_id: str) -> Sequence[Watchlist]:
        return ()


class ScreeningService:
    def __init__(
        self,
        engine: Callable[[], ScreeningProvider] | None = None,
        watchlists: WatchlistSource | None = None,
        tenancy: TenancyService | None = None,
    ) -> None:
        # `engine` when given, else the tenant's configured screening provider (moncore.providers.screening).
        self._engine = engine
        self._watchlists = watchlists or TenantWatchlists()
        self._tenancy = tenancy or TenancyService()

    def check(
        self, who: Caller, *, name: str, country: str | None = None, date_of_birth: str | None = None
    ) -> dict[str, Any]:
        tenant_id = who.require_tenant()
        provider = self._engine() if self._engine else self._provider(tenant_id)
        matches = provider.screen(
            name, country=country, date_of_birth=date_of_birth, watchlists=self._watchlists.for_tenant(tenant_id)
        )
        store.record_check(
            audit_event(
                tenant_id=tenant_id,
                action="screening.checked",
                actor=who.actor,
                correlation_id=who.correlation_id,
                subject_id=None,
                payload={
                    "provider": provider.name,
                    "query": {"name": name, "country": country, "date_of_birth": date_of_birth},
                    "matches": [
                        {"list": m.list, "entry_id": m.entry_id, "score": str(m.score), "decision": m.decision}
                        for m in matches
                    ],
                },
            )
        )
        return {"matches": [match.to_dict() for match in matches]}

    def _provider(self, tenant_id: str) -> ScreeningProvider:
        return screening_provider(self._tenancy.tenant_config(tenant_id).screening_provider)
