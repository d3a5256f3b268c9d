"""`POST /v1/screening/checks`: screen one name for a tenant, audited.

A check creates nothing and moves nothing, so it is not idempotent (a repeat is a new check, and is audited as one).
The audit event (`screening.checked`) keeps the query and, per match, the list, entry id, score and decision, so a
regulator can see who screened what and what the engine answered; the explanations are not stored (they can be
recomputed from the same lists and code).

Tenant watchlists come from a WatchlistSource: by default the tenant's stored watchlist (watchlists.py, managed
through the admin routes), read on every check, so an entry added a moment ago is screened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from moncore.compliance.screening.engine import ScreeningEngine, default_engine
from moncore.compliance.screening.lists import Watchlist
from moncore.compliance.screening.watchlists import TenantWatchlists
from moncore.domain.audit import audit_event
from moncore.domain.context import Caller
from moncore.store import screening as store


class WatchlistSource(Protocol):
    def for_tenant(self, tenant_id: str) -> Sequence[Watchlist]: ...


class NoTenantWatchlists:
    def for_tenant(self, tenant_id: str) -> Sequence[Watchlist]:
        return ()


class ScreeningService:
    def __init__(
        self,
        engine: Callable[[], ScreeningEngine] = default_engine,
        watchlists: WatchlistSource | None = None,
    ) -> None:
        self._engine = engine  # called per check: the default engine is built on first use, then cached
        self._watchlists = watchlists or TenantWatchlists()

    def check(
        self, who: Caller, *, name: str, country: str | None = None, date_of_birth: str | None = None
    ) -> dict[str, Any]:
        tenant_id = who.require_tenant()
        matches = self._engine().screen(
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
                    "query": {"name": name, "country": country, "date_of_birth": date_of_birth},
                    "matches": [
                        {"list": m.list, "entry_id": m.entry_id, "score": str(m.score), "decision": m.decision}
                        for m in matches
                    ],
                },
            )
        )
        return {"matches": [match.to_dict() for match in matches]}
