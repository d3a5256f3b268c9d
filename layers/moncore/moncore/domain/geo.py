"""Geo restrictions: where a tenant may serve users and send money. Pure, no I/O (docs/limits-and-geo.md).

Two rules, checked for users (their country of residence, at creation and again on every posting that moves their
money) and for counterparties (a beneficiary's country, e.g. the country of a withdrawal's IBAN):
1. the country must be one of the tenant's jurisdictions (ISO 3166-1 alpha-2, set on the tenant by an admin): the
   countries its licence or passport lets it serve;
2. the country must not be on the FATF list of "High-Risk Jurisdictions subject to a Call for Action" below, whatever
   the tenant's jurisdictions say (a tenant cannot be created with one of them either).
A refusal is GeoBlocked (422, code `geo_blocked`, a kind of `compliance_blocked`) naming the rule.

The FATF list is data with a date: FATF reviews it at each plenary (February, June, October). Updating it is a code
change reviewed like any other, with the new statement's date and reference; the list below must never be edited
without changing FATF_LIST_AS_OF and FATF_LIST_SOURCE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from moncore.domain.errors import GeoBlocked


@dataclass(frozen=True, slots=True)
class FatfListing:
    country: str  # ISO 3166-1 alpha-2
    name: str
    measure: str  # what FATF calls for: "countermeasures" or "enhanced due diligence"


# FATF, "High-Risk Jurisdictions subject to a Call for Action - October 2025", public statement of 24 October 2025
# (Paris plenary, 22-24 October 2025): no jurisdiction added or removed since the February and June 2025 statements.
FATF_LIST_AS_OF = "2025-10-24"
FATF_LIST_SOURCE = (
    'FATF public statement "High-Risk Jurisdictions subject to a Call for Action - October 2025", 24 October 2025, '
    "fatf-gafi.org (publications, high-risk and other monitored jurisdictions)"
)
FATF_CALL_FOR_ACTION: dict[str, FatfListing] = {
    listing.country: listing
    for listing in (
        FatfListing("KP", "Democratic People's Republic of Korea", "countermeasures"),
        FatfListing("IR", "Iran", "countermeasures"),
        FatfListing("MM", "Myanmar", "enhanced due diligence"),
    )
}

OUTSIDE_JURISDICTIONS = "outside_jurisdictions"
FATF_CALL_FOR_ACTION_REASON = "fatf_call_for_action"


def blocked_reason(country: str, jurisdictions: Iterable[str]) -> str | None:
    """Why `country` is blocked for a tenant serving `jurisdictions`, or None when it is allowed. The FATF rule wins
    (it applies whatever the tenant was configured with)."""
    if country in FATF_CALL_FOR_ACTION:
        return FATF_CALL_FOR_ACTION_REASON
    if country not in set(jurisdictions):
        return OUTSIDE_JURISDICTIONS
    return None


def check_user_country(country: str, jurisdictions: Iterable[str], *, field: str = "country") -> dict[str, Any]:
    """The recorded geo check of a user's country; GeoBlocked when it is not allowed."""
    return _check("user", country, tuple(jurisdictions), ["body", field])


def check_counterparty_country(
    country: str, jurisdictions: Iterable[str], *, loc: list[str] | None = None
) -> dict[str, Any]:
    """The recorded geo check of a counterparty (e.g. a withdrawal beneficiary); GeoBlocked when not allowed."""
    return _check("counterparty", country, tuple(jurisdictions), loc or ["body", "beneficiary", "country"])


def check_tenant_jurisdictions(jurisdictions: Iterable[str]) -> None:
    """A tenant may not be configured to serve a FATF call-for-action country."""
    listed = sorted(set(jurisdictions) & set(FATF_CALL_FOR_ACTION))
    if listed:
        raise GeoBlocked(
            f"jurisdictions on the FATF call-for-action list (as of {FATF_LIST_AS_OF}): {', '.join(listed)}",
            errors=[
                {"loc": ["body", "jurisdictions"], "msg": f"{code} is on the FATF call-for-action list"}
                for code in listed
            ],
        )


def iban_country(iban: str) -> str:
    """The ISO 3166-1 country of an IBAN (its first two letters), for the counterparty check of a payout."""
    return iban.replace(" ", "")[:2].upper()


def _check(subject: str, country: str, jurisdictions: tuple[str, ...], loc: list[str]) -> dict[str, Any]:
    reason = blocked_reason(country, jurisdictions)
    if reason == FATF_CALL_FOR_ACTION_REASON:
        listing = FATF_CALL_FOR_ACTION[country]
        raise GeoBlocked(
            f"{subject} country {country} ({listing.name}) is on the FATF call-for-action list "
            f"(FATF calls for {listing.measure}; list as of {FATF_LIST_AS_OF})",
            errors=[{"loc": loc, "msg": "FATF call-for-action jurisdiction", "reason": reason, "country": country}],
        )
    if reason == OUTSIDE_JURISDICTIONS:
        served = ", ".join(sorted(jurisdictions))
        raise GeoBlocked(
            f"{subject} country {country} is outside the tenant's jurisdictions ({served})",
            errors=[{"loc": loc, "msg": "outside the tenant's jurisdictions", "reason": reason, "country": country}],
        )
    return {
        "check": "geo",
        "subject": subject,
        "country": country,
        "result": "pass",
        "fatf_list_as_of": FATF_LIST_AS_OF,
    }
