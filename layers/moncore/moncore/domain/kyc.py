"""KYC adjudication: the kernel's own rules turn a provider's ADVISORY result into a tier and a KYC status. Pure.

A KYC provider only reports what it observed (document verified, liveness passed, address verified, risk flags) and
may recommend a tier; the recommendation is recorded and never used. The kernel decides (docs/kyc.md):

- `document_expired` (a flag, or a document expiry date already past): REJECTED.
- `pep`, `adverse_media`, `sanctions`, or any flag the kernel does not know: REFERRED to a compliance officer (a
  case), no upgrade. Unknown flags fail closed: a provider adding a flag cannot upgrade anyone by it.
- tier_1 evidence: document verified and liveness passed; tier_2 evidence: tier_1 evidence, address verified and no
  risk flag at all.
- no tier_1 evidence: REJECTED; otherwise APPROVED for the lower of the requested level and the evidence (a tier_2
  check without a verified address grants tier_1).
- The tier only moves up through a check: new tier = max(current, granted). Downgrades happen only through the
  tier_enforcement job (expired evidence) or an admin.

Evidence expires EVIDENCE_VALIDITY after the adjudication, or at the end of the document's validity if sooner; the
expiry is renewed only by a check that grants at least the current tier (tier_1 evidence does not extend tier_2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import rfc3339
from moncore.domain.errors import ValidationFailed
from moncore.domain.limits import DEFAULT_TIER, TIERS

KYC_LEVELS = ("tier_1", "tier_2")  # what a check may ask for
EVIDENCE_VALIDITY = timedelta(days=365)
REFERRAL_FLAGS = frozenset({"pep", "adverse_media", "sanctions"})
REJECTION_FLAGS = frozenset({"document_expired"})
KNOWN_FLAGS = REFERRAL_FLAGS | REJECTION_FLAGS
_MAX_FLAGS = 20


class KycStatus(StrEnum):
    """The user's KYC status (UserItem.kyc_status; absent = unverified)."""

    UNVERIFIED = "unverified"
    VERIFIED = "verified"  # the tier is backed by evidence that has not expired
    REVIEW = "review"  # a check was referred to a compliance officer (risk flags)
    REJECTED = "rejected"  # the last check failed and no verified tier remains
    EXPIRED = "expired"  # the evidence expired; the tier_enforcement job moved the user back to tier_0


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    REFERRED = "referred"


@dataclass(frozen=True, slots=True)
class Advisory:
    """What the provider reports, normalised by its adapter. Advisory only: the kernel decides from it."""

    document_verified: bool
    liveness_passed: bool
    address_verified: bool
    risk_flags: tuple[str, ...] = ()
    recommended_tier: str | None = None  # recorded, never trusted
    document_expires_on: str | None = None  # YYYY-MM-DD

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Advisory:
        """Strict: booleans are booleans, flags a list of short strings, dates ISO dates; ValidationFailed else."""
        flags = raw.get("risk_flags", [])
        if not isinstance(flags, list) or len(flags) > _MAX_FLAGS:
            raise _bad("risk_flags", f"a list of at most {_MAX_FLAGS} strings")
        if not all(isinstance(flag, str) and 0 < len(flag) <= 64 for flag in flags):
            raise _bad("risk_flags", "a list of strings")
        checks = {}
        for name in ("document_verified", "liveness_passed", "address_verified"):
            value = raw.get(name, False)
            if type(value) is not bool:
                raise _bad(name, "a boolean")
            checks[name] = value
        recommended = raw.get("recommended_tier")
        if recommended is not None and not isinstance(recommended, str):
            raise _bad("recommended_tier", "a string or null")
        expires_on = raw.get("document_expires_on")
        if expires_on is not None:
            if not isinstance(expires_on, str) or len(expires_on) != 10:
                raise _bad("document_expires_on", "a date YYYY-MM-DD or null")
            try:
                date.fromisoformat(expires_on)
            except ValueError:
                raise _bad("document_expires_on", "a date YYYY-MM-DD or null") from None
        return cls(
            checks["document_verified"],
            checks["liveness_passed"],
            checks["address_verified"],
            tuple(sorted(set(flags))),
            recommended,
            expires_on,
        )

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "risk_flags": list(self.risk_flags)}

    @property
    def sha256(self) -> str:
        """The hash of the inputs the adjudication used (canonical JSON), recorded with the decision."""
        return sha256_hex(self.record())


@dataclass(frozen=True, slots=True)
class Adjudication:
    decision: Decision
    evidence_tier: str  # what the evidence alone supports
    granted_tier: str | None  # APPROVED only: min(requested level, evidence)
    tier_before: str
    tier_after: str  # max(tier_before, granted): never lower
    kyc_status: KycStatus  # the user's status after this check
    expires_at: str | None  # new evidence expiry (RFC 3339), or None to keep the stored one
    reasons: tuple[str, ...]

    @property
    def opens_case(self) -> bool:
        return self.decision is Decision.REFERRED

    def record(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "evidence_tier": self.evidence_tier,
            "granted_tier": self.granted_tier,
            "tier_before": self.tier_before,
            "tier_after": self.tier_after,
            "kyc_status": self.kyc_status.value,
            "expires_at": self.expires_at,
            "reasons": list(self.reasons),
        }


def rank(tier: str) -> int:
    """tier_0 < tier_1 < tier_2; an unknown tier ranks lowest (it allows nothing, see domain.limits)."""
    return TIERS.index(tier) if tier in TIERS else -1


def check_level(level: str) -> str:
    if level not in KYC_LEVELS:
        raise ValidationFailed(
            f"level must be one of {', '.join(KYC_LEVELS)}",
            errors=[{"loc": ["body", "level"], "msg": f"one of {', '.join(KYC_LEVELS)}"}],
        )
    return level


def adjudicate(
    *, level: str, current_tier: str, current_status: str | None, advisory: Advisory, now: datetime
) -> Adjudication:
    """The kernel's decision on one check (see the module docstring for the rules)."""
    check_level(level)
    reasons: list[str] = []
    flags = set(advisory.risk_flags)
    evidence = _evidence_tier(advisory, flags, reasons)
    today = now.astimezone(UTC).date()
    expired_document = "document_expired" in flags or (
        advisory.document_expires_on is not None and date.fromisoformat(advisory.document_expires_on) < today
    )
    if advisory.recommended_tier is not None:
        reasons.append(f"provider_recommended:{advisory.recommended_tier} (advisory, not used)")
    current_status = current_status or KycStatus.UNVERIFIED.value
    keep = KycStatus(current_status) if current_status in set(KycStatus) else KycStatus.UNVERIFIED

    def refused(decision: Decision, status: KycStatus) -> Adjudication:
        return Adjudication(decision, evidence, None, current_tier, current_tier, status, None, tuple(reasons))

    if expired_document:
        reasons.insert(0, "document_expired")
        # A failed check does not take away a tier that valid earlier evidence still backs.
        return refused(Decision.REJECTED, KycStatus.REJECTED if rank(current_tier) <= 0 else keep)
    unknown = sorted(flags - KNOWN_FLAGS)
    referral = sorted(flags & REFERRAL_FLAGS)
    if referral or unknown:
        reasons[:0] = [f"risk_flag:{flag}" for flag in referral] + [f"unknown_risk_flag:{flag}" for flag in unknown]
        return refused(Decision.REFERRED, KycStatus.REVIEW)
    if rank(evidence) < rank("tier_1"):
        return refused(Decision.REJECTED, KycStatus.REJECTED if rank(current_tier) <= 0 else keep)
    granted = level if rank(level) <= rank(evidence) else evidence
    if granted != level:
        reasons.append(f"granted:{granted} (the evidence does not support {level})")
    tier_after = current_tier if rank(current_tier) >= rank(granted) else granted
    if tier_after == current_tier and granted != current_tier:
        reasons.append(f"kept:{current_tier} (a check never lowers the tier)")
    expires_at = _expiry(advisory, now) if rank(granted) >= rank(current_tier) else None
    return Adjudication(
        Decision.APPROVED, evidence, granted, current_tier, tier_after, KycStatus.VERIFIED, expires_at, tuple(reasons)
    )


def _evidence_tier(advisory: Advisory, flags: set[str], reasons: list[str]) -> str:
    reasons.append("document_verified" if advisory.document_verified else "document_not_verified")
    reasons.append("liveness_passed" if advisory.liveness_passed else "liveness_failed")
    reasons.append("address_verified" if advisory.address_verified else "address_not_verified")
    if not (advisory.document_verified and advisory.liveness_passed):
        return DEFAULT_TIER
    if advisory.address_verified and not flags:
        return "tier_2"
    return "tier_1"


def _expiry(advisory: Advisory, now: datetime) -> str:
    expiry = now + EVIDENCE_VALIDITY
    if advisory.document_expires_on is not None:
        document_end = datetime.combine(
            date.fromisoformat(advisory.document_expires_on) + timedelta(days=1), datetime.min.time(), tzinfo=UTC
        )
        expiry = min(expiry, document_end)
    return rfc3339(expiry)


def _bad(name: str, msg: str) -> ValidationFailed:
    return ValidationFailed(f"advisory result: {name} must be {msg}", errors=[{"loc": ["result", name], "msg": msg}])
