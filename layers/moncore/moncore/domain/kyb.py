"""KYB and UBO adjudication: the kernel's own rules over a provider's ADVISORY report on a business. Pure, no I/O.

A KYB provider looks the business up in its company registry and reports what it found (registered or not, its
status, the beneficial owners the registry names with their ownership) and any risk flags; it may recommend an
outcome, which is recorded and never used. The kernel decides (docs/providers.md, "KYC, KYB and UBO"):

- not found in the registry, or not `active` there (dissolved, in liquidation, ...): REJECTED;
- any risk flag (`sanctions`, `pep`, `adverse_media`, or one the kernel does not know: fail closed): REFERRED;
- a beneficial owner (UBO_THRESHOLD_BP or more of the business, EU AMLD) the registry names but the partner did not
  declare: REFERRED (an undeclared owner is the classic KYB red flag);
- no owner at or above the threshold at all: REFERRED (an officer records the senior managing official instead);
- else APPROVED. Either way the beneficial owners come back for the kernel to screen as persons (the screening
  port): a KYB approval is never a sanctions clearance.

Ownership is integer basis points (2500 = 25.00 %), never a float; the owners of one report sum to at most 10000.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from moncore.domain.canonical import sha256_hex
from moncore.domain.errors import ValidationFailed
from moncore.domain.kyc import Decision

UBO_THRESHOLD_BP = 2_500  # 25 %: a beneficial owner (Directive (EU) 2015/849, art. 3(6))
FULL_OWNERSHIP_BP = 10_000
KNOWN_FLAGS = frozenset({"sanctions", "pep", "adverse_media"})
ACTIVE = "active"
_MAX_OWNERS = 50
_MAX_FLAGS = 20


@dataclass(frozen=True, slots=True)
class Owner:
    """A person owning part of a business, declared by the partner or reported by the provider."""

    full_name: str
    country: str  # ISO 3166 alpha-2
    ownership_bp: int  # basis points of the business
    date_of_birth: str | None = None  # YYYY-MM-DD

    @property
    def beneficial(self) -> bool:
        return self.ownership_bp >= UBO_THRESHOLD_BP


@dataclass(frozen=True, slots=True)
class BusinessAdvisory:
    """What the provider reports, normalised by its adapter. Advisory only: the kernel decides from it."""

    registry_found: bool
    registry_status: str | None  # "active", "dissolved", ... (the registry's word, lower case)
    owners: tuple[Owner, ...] = ()
    risk_flags: tuple[str, ...] = ()
    recommended: str | None = None  # recorded, never trusted

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> BusinessAdvisory:
        """Strict: ValidationFailed on a wrong type, a float ownership, or owners summing above 100 %."""
        found, status = raw.get("registry_found"), raw.get("registry_status")
        if type(found) is not bool:
            raise _bad("registry_found", "a boolean")
        if status is not None and (not isinstance(status, str) or not 0 < len(status) <= 40):
            raise _bad("registry_status", "a short string or null")
        flags = raw.get("risk_flags", [])
        if not isinstance(flags, list) or len(flags) > _MAX_FLAGS:
            raise _bad("risk_flags", f"a list of at most {_MAX_FLAGS} strings")
        if not all(isinstance(flag, str) and 0 < len(flag) <= 64 for flag in flags):
            raise _bad("risk_flags", "a list of strings")
        owners = raw.get("owners", [])
        if not isinstance(owners, list) or len(owners) > _MAX_OWNERS:
            raise _bad("owners", f"a list of at most {_MAX_OWNERS} owners")
        parsed = tuple(owner_of(owner, loc="owners") for owner in owners)
        check_ownership(parsed, loc="owners")
        recommended = raw.get("recommended")
        if recommended is not None and not isinstance(recommended, str):
            raise _bad("recommended", "a string or null")
        return cls(found, status.lower() if status else None, parsed, tuple(sorted(set(flags))), recommended)

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "owners": [asdict(o) for o in self.owners], "risk_flags": list(self.risk_flags)}

    @property
    def sha256(self) -> str:
        """The hash of the inputs the adjudication used (canonical JSON), recorded with the decision."""
        return sha256_hex(self.record())


@dataclass(frozen=True, slots=True)
class BusinessAdjudication:
    decision: Decision
    reasons: tuple[str, ...]
    beneficial_owners: tuple[Owner, ...]  # declared and reported, at or above the threshold: screen each one

    @property
    def opens_case(self) -> bool:
        return self.decision is Decision.REFERRED

    def record(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "beneficial_owners": [asdict(o) for o in self.beneficial_owners],
        }


def owner_of(raw: object, *, loc: str) -> Owner:
    if not isinstance(raw, Mapping):
        raise _bad(loc, "an object {full_name, country, ownership_bp, date_of_birth?}")
    name, country, share = raw.get("full_name"), raw.get("country"), raw.get("ownership_bp")
    born = raw.get("date_of_birth")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 200:
        raise _bad(f"{loc}.full_name", "1 to 200 characters")
    if not isinstance(country, str) or len(country) != 2 or not country.isalpha() or not country.isupper():
        raise _bad(f"{loc}.country", "ISO 3166 alpha-2")
    if type(share) is not int or not 0 < share <= FULL_OWNERSHIP_BP:
        raise _bad(f"{loc}.ownership_bp", "an integer number of basis points, 1 to 10000 (never a float)")
    if born is not None and (not isinstance(born, str) or len(born) != 10):
        raise _bad(f"{loc}.date_of_birth", "a date YYYY-MM-DD or null")
    return Owner(name.strip(), country, share, born)


def check_ownership(owners: Sequence[Owner], *, loc: str) -> None:
    if sum(owner.ownership_bp for owner in owners) > FULL_OWNERSHIP_BP:
        raise _bad(loc, "the owners' shares sum to more than 10000 basis points")


def adjudicate_business(*, declared: Sequence[Owner], advisory: BusinessAdvisory) -> BusinessAdjudication:
    """The kernel's decision on one business check (see the module docstring for the rules)."""
    check_ownership(declared, loc="declared_owners")
    reasons: list[str] = []
    if advisory.recommended is not None:
        reasons.append(f"provider_recommended:{advisory.recommended} (advisory, not used)")
    owners = _beneficial(declared, advisory.owners)
    if not advisory.registry_found:
        return BusinessAdjudication(Decision.REJECTED, ("not_in_registry", *reasons), owners)
    if advisory.registry_status != ACTIVE:
        return BusinessAdjudication(
            Decision.REJECTED, (f"registry_status:{advisory.registry_status}", *reasons), owners
        )
    flags = set(advisory.risk_flags)
    referral = [f"risk_flag:{f}" for f in sorted(flags & KNOWN_FLAGS)]
    referral += [f"unknown_risk_flag:{f}" for f in sorted(flags - KNOWN_FLAGS)]
    declared_names = {_name_key(owner.full_name) for owner in declared}
    referral += [
        f"undeclared_beneficial_owner:{owner.full_name}"
        for owner in advisory.owners
        if owner.beneficial and _name_key(owner.full_name) not in declared_names
    ]
    if not owners:
        referral.append("no_beneficial_owner_at_threshold (record the senior managing official)")
    if referral:
        return BusinessAdjudication(Decision.REFERRED, (*referral, *reasons), owners)
    return BusinessAdjudication(Decision.APPROVED, ("registry_active", *reasons), owners)


def _beneficial(declared: Sequence[Owner], reported: Sequence[Owner]) -> tuple[Owner, ...]:
    """Every owner at or above the threshold, declared or reported, once per name (the declared entry wins)."""
    found: dict[str, Owner] = {}
    for owner in (*declared, *reported):
        if owner.beneficial:
            found.setdefault(_name_key(owner.full_name), owner)
    return tuple(found.values())


def _name_key(name: str) -> str:
    return " ".join(name.casefold().split())


def _bad(field: str, msg: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {msg}", errors=[{"loc": ["body", *field.split(".")], "msg": msg}])
