"""Screening provider port (advisory) and the kernel's own adapter.

A screening provider compares a name (with a country and a date of birth when known) with sanctions lists and the
tenant's own watchlist entries, and answers candidate matches with a score in 0..1 and an explanation. It advises;
the kernel decides (moncore.compliance.screening.policy: confirmed / possible thresholds, remembered false
positives, cases; docs/screening.md). The port:

- `screen(name, *, country, date_of_birth, watchlists) -> list[Match]`: the matches at or above the possible
  threshold, best first, one per list entry. `watchlists` are the tenant's own lists (the kernel keeps them and
  passes them on every call);
- `lists_digest`: an opaque text that changes whenever what the provider screens against changes (a list update);
  it is part of the lists version every user is marked with, so the re-screening job screens everyone again when
  it changes. Two providers must never share a digest (switching a tenant's provider re-screens its users).

Which adapter a tenant uses is tenant configuration (`screening_provider`), never the environment's name. The
default, `moncore_lists`, is the kernel's own engine over the shipped OFAC SDN and UN consolidated lists
(moncore.compliance.screening.engine).

Errors: ProviderUnavailable (retryable: a user creation or a withdrawal refused for it creates nothing; a retry with
the same Idempotency-Key screens again), ValidationFailed (unknown provider).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from moncore.compliance.screening.engine import Match, ScreeningEngine, default_engine
from moncore.compliance.screening.lists import Watchlist
from moncore.providers.plugins import Adapters

__all__ = ["DEFAULT_SCREENING_PROVIDER", "Match", "MonCoreLists", "ScreeningProvider", "register", "screening_provider"]


class ScreeningProvider(Protocol):
    name: str

    @property
    def lists_digest(self) -> str: ...

    def screen(
        self,
        name: str,
        *,
        country: str | None = None,
        date_of_birth: str | None = None,
        watchlists: Sequence[Watchlist] = (),
    ) -> list[Match]: ...


class MonCoreLists:
    """The kernel's own engine as a screening adapter: built once per process on first use (default_engine)."""

    name = "moncore_lists"

    def __init__(self, engine: Callable[[], ScreeningEngine] = default_engine) -> None:
        self._engine = engine

    @property
    def lists_digest(self) -> str:
        # The engine's digest as it always was: users screened before the port existed keep their lists version.
        return self._engine().lists_digest

    def screen(
        self,
        name: str,
        *,
        country: str | None = None,
        date_of_birth: str | None = None,
        watchlists: Sequence[Watchlist] = (),
    ) -> list[Match]:
        return self._engine().screen(name, country=country, date_of_birth=date_of_birth, watchlists=watchlists)


DEFAULT_SCREENING_PROVIDER = MonCoreLists.name
ADAPTERS: Adapters[ScreeningProvider] = Adapters(
    "screening provider", "screening_provider", [(MonCoreLists.name, MonCoreLists())]
)


def register(adapter: ScreeningProvider) -> None:
    """Make an adapter selectable as a tenant's `screening_provider` (providers/plugins.py loads the modules that
    call this). Screening answers synchronously: no webhook route."""
    ADAPTERS.register(adapter.name, adapter)


def screening_provider(name: str) -> ScreeningProvider:
    return ADAPTERS.get(name)
