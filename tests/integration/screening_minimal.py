"""A second screening adapter that exists only in the tests: the proof that the kernel screens through its port, so
another implementation is configuration, not a kernel change (docs/providers.md, "Adding a provider").

It knows one list with one entry. The stack parameter ProviderPlugins names this module
(tests/integration/conftest.py); moncore.providers.plugins imports it on the first lookup of a provider name the
kernel does not know, and the `register` call below makes `minimal_screening` selectable as a tenant's
`screening_provider`. The kernel still decides: the adapter only reports a match and its name score.
"""

from __future__ import annotations

from collections.abc import Sequence

from moncore.compliance.screening.lists import Watchlist
from moncore.providers.screening import Match, register

NAME = "minimal_screening"
LISTED = "Boris Badenov"


class MinimalScreening:
    name = NAME
    lists_digest = "minimal-screening-list-v1"  # its own: switching a tenant to it re-screens its users

    def screen(
        self,
        name: str,
        *,
        country: str | None = None,
        date_of_birth: str | None = None,
        watchlists: Sequence[Watchlist] = (),
    ) -> list[Match]:
        if " ".join(name.casefold().split()) != LISTED.casefold():
            return []
        return [
            Match(
                list="minimal_watch",
                entry_id="MW-1",
                name=LISTED,
                matched_name=LISTED,
                score=1.0,
                decision="confirmed",
                explanation=f"{name!r} is {LISTED!r} on the minimal list",
                name_score=1.0,
            )
        ]


register(MinimalScreening())
