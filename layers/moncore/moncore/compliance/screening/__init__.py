"""Sanctions screening: names against the OFAC SDN list, the UN consolidated list and tenants' own watchlists.

    from moncore.compliance.screening import default_engine
    matches = default_engine().screen("Nicolas Maduro Moros", country="VE", date_of_birth="1962-11-23")

Modules: lists (loaders, entries), normalize (names -> tokens), index (normalised names, candidate retrieval, token
weights), scoring (name score, modifiers), engine (screen, score_pair, thresholds), service (the API's check, audited),
policy (confirmed vs possible, false positives, lists version), watchlists (tenants' own lists), gate (screening wired
into user creation, movements, beneficiaries, case decisions and the re-screening job).
docs/screening.md has the design, the thresholds and the measured precision and recall.
"""

from moncore.compliance.screening.engine import (
    CONFIRMED_THRESHOLD,
    POSSIBLE_THRESHOLD,
    Match,
    PairScore,
    ScreeningEngine,
    default_engine,
)
from moncore.compliance.screening.lists import ListedName, ListsNotFound, Watchlist, WatchlistEntry

__all__ = [
    "CONFIRMED_THRESHOLD",
    "POSSIBLE_THRESHOLD",
    "ListedName",
    "ListsNotFound",
    "Match",
    "PairScore",
    "ScreeningEngine",
    "Watchlist",
    "WatchlistEntry",
    "default_engine",
]
