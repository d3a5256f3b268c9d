"""AML rules: a versioned rule set that scores one money movement from its inputs and decides allow / review / block.
Pure, no I/O (docs/aml.md).

Each rule looks at the request and the parties' rolling-window velocity (moncore.domain.velocity) and, when it
fires, adds a score and a reason. The total decides: below REVIEW_AT allow, from REVIEW_AT review (the funds are
held and a case opens), from BLOCK_AT block (422 `compliance_blocked`, nothing posted). Every rule alone scores a
review; any two red flags together block.

The rule set is versioned: RULESET_VERSION names these rules with these parameters, and every AML event records it
with the SHA-256 of the canonical inputs, so a decision can be re-derived later from the event alone. Changing a
rule or a parameter means a new version.

Amount parameters are nominal units scaled per currency with the same table as the default tier limits
(moncore.domain.limits.CURRENCY_UNIT_MINOR); a currency outside it is scaled by its ISO 4217 exponent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from moncore.domain.canonical import sha256_hex
from moncore.domain.limits import CURRENCY_UNIT_MINOR
from moncore.domain.money import currency_exponent
from moncore.domain.velocity import Velocity, parse

RULESET_VERSION = "aml-2026.11-2"  # -2: card authorisations and withdrawals are scored like transfers
REVIEW_AT = 50
BLOCK_AT = 100

# Parameters of RULESET_VERSION (nominal units, see the module docstring).
THRESHOLD_UNITS = 1_000  # EU transfer-of-funds threshold (EUR 1,000): amounts just below it are the structuring band
STRUCTURING_BAND_PERCENT = 90  # "just below" = from 90 % of the threshold up to (not including) it
RAPID_MIN_IN_UNITS = 500  # rapid in-and-out only looks at users who received at least this in the last hour
RAPID_PASS_THROUGH_PERCENT = 90  # ... and send on at least this share of it within the hour
LARGE_FUNDING_UNITS = 10_000  # EU large-transaction threshold (EUR 10,000)
PASS_THROUGH_MIN_IN_UNITS = 10_000  # the sweep: 30 days in which at least this arrived ...
PASS_THROUGH_PERCENT = 80  # ... and at least this share of it left again (a pass-through account)
NEW_USER_AGE = timedelta(days=30)

# FATF "Jurisdictions under Increased Monitoring - October 2025" (24 October 2025): not blocked (that is the call
# for action list in moncore.domain.geo) but a risk factor for enhanced due diligence.
FATF_INCREASED_MONITORING_AS_OF = "2025-10-24"
FATF_INCREASED_MONITORING = frozenset(
    {
        "DZ",  # Algeria
        "AO",  # Angola
        "BO",  # Bolivia
        "BG",  # Bulgaria
        "CM",  # Cameroon
        "CI",  # Cote d'Ivoire
        "CD",  # Democratic Republic of the Congo
        "HT",  # Haiti
        "KE",  # Kenya
        "LA",  # Lao PDR
        "LB",  # Lebanon
        "MC",  # Monaco
        "NA",  # Namibia
        "NP",  # Nepal
        "SS",  # South Sudan
        "SY",  # Syria
        "VE",  # Venezuela
        "VN",  # Vietnam
        "VG",  # British Virgin Islands
        "YE",  # Yemen
    }
)


class Operation(StrEnum):
    TRANSFER = "transfer"
    FUNDING = "funding"
    FX_CONVERSION = "fx_conversion"
    CARD_AUTHORIZATION = "card_authorization"  # money leaves the cardholder for a merchant (no payee user)
    WITHDRAWAL = "withdrawal"  # money leaves the user for an external IBAN (no payee user)
    SWEEP = "sweep"  # the scheduled sweep's finding about a user (no request)


# Operations where the payer's money leaves it for someone else: the payment rules (rapid in-and-out, structuring,
# high-risk country) score them alike.
OUTGOING_PAYMENTS = frozenset({Operation.TRANSFER, Operation.CARD_AUTHORIZATION, Operation.WITHDRAWAL})
# Of those, the ones that pass money on to another person or account (the mule pattern rapid_in_out looks for). A card
# purchase is not one: topping up a card and spending it at once is how prepaid cards are normally used.
PASS_ON_PAYMENTS = frozenset({Operation.TRANSFER, Operation.WITHDRAWAL})


class Decision(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Party:
    """A user on one side of the movement, with its velocity in the movement's currency."""

    user_id: str
    country: str
    tier: str
    created_at: str
    velocity: Velocity = field(default_factory=Velocity)

    def record(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "country": self.country,
            "tier": self.tier,
            "created_at": self.created_at,
            "velocity": self.velocity.record(),
        }


@dataclass(frozen=True, slots=True)
class AmlInputs:
    operation: Operation
    amount_minor: int
    currency: str
    decided_at: str
    payer: Party | None = None  # the user whose money leaves (None for a funding)
    payee: Party | None = None  # the user who receives (None for an FX conversion: the payer keeps the money)

    def record(self) -> dict[str, Any]:
        return {
            "ruleset": RULESET_VERSION,
            "operation": self.operation.value,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "decided_at": self.decided_at,
            "payer": self.payer.record() if self.payer else None,
            "payee": self.payee.record() if self.payee else None,
        }

    @property
    def inputs_hash(self) -> str:
        return sha256_hex(self.record())


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    score: int
    detail: str

    def record(self) -> dict[str, Any]:
        return {"rule": self.rule, "score": self.score, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AmlDecision:
    decision: Decision
    score: int
    reasons: tuple[Reason, ...]
    inputs: AmlInputs
    ruleset: str = RULESET_VERSION
    inputs_hash: str = field(default="")

    def record(self) -> dict[str, Any]:
        """The compliance check recorded on the transaction and in the AML event."""
        return {
            "check": "aml",
            "ruleset": self.ruleset,
            "decision": self.decision.value,
            "score": self.score,
            "reasons": [reason.record() for reason in self.reasons],
            "inputs_sha256": self.inputs_hash,
        }


def units_minor(units: int, currency: str) -> int:
    """`units` nominal units of the rule parameters in minor units of `currency`."""
    scale = CURRENCY_UNIT_MINOR.get(currency)
    return units * (scale if scale is not None else 10 ** currency_exponent(currency))


def evaluate(inputs: AmlInputs) -> AmlDecision:
    """Score the movement with every rule of RULESET_VERSION and decide."""
    reasons = tuple(
        reason
        for rule in (rapid_in_out, structuring, first_large_funding, high_risk_country)
        if (reason := rule(inputs)) is not None
    )
    score = sum(reason.score for reason in reasons)
    decision = Decision.BLOCK if score >= BLOCK_AT else Decision.REVIEW if score >= REVIEW_AT else Decision.ALLOW
    return AmlDecision(decision, score, reasons, inputs, RULESET_VERSION, inputs.inputs_hash)


def rapid_in_out(inputs: AmlInputs) -> Reason | None:
    """Money that arrived within the hour leaves again at once (a pass-through or mule account)."""
    payer = inputs.payer
    if inputs.operation not in PASS_ON_PAYMENTS or payer is None:
        return None
    received = payer.velocity.in_1h.amount_minor
    sent = payer.velocity.out_1h.amount_minor + inputs.amount_minor
    if received < units_minor(RAPID_MIN_IN_UNITS, inputs.currency):
        return None
    if sent * 100 < received * RAPID_PASS_THROUGH_PERCENT:
        return None
    return Reason(
        "rapid_in_out",
        50,
        f"{sent} of {received} minor units received in the last hour leave within the hour "
        f"(>= {RAPID_PASS_THROUGH_PERCENT} %)",
    )


def structuring(inputs: AmlInputs) -> Reason | None:
    """Payments just below the threshold that together exceed it within a day (splitting to stay under it)."""
    payer = inputs.payer
    if inputs.operation not in OUTGOING_PAYMENTS or payer is None:
        return None
    threshold = units_minor(THRESHOLD_UNITS, inputs.currency)
    just_below = inputs.amount_minor * 100 >= threshold * STRUCTURING_BAND_PERCENT and inputs.amount_minor < threshold
    day = payer.velocity.out_24h
    if not just_below or day.count < 1 or day.amount_minor + inputs.amount_minor < threshold:
        return None
    return Reason(
        "structuring",
        60,
        f"{inputs.amount_minor} is just below the threshold of {threshold}; with {day.count} earlier payments "
        f"today the payer sent {day.amount_minor + inputs.amount_minor} in 24 hours",
    )


def first_large_funding(inputs: AmlInputs) -> Reason | None:
    """A new user's very first incoming money is a large amount."""
    payee = inputs.payee
    if inputs.operation is not Operation.FUNDING or payee is None:
        return None
    large = units_minor(LARGE_FUNDING_UNITS, inputs.currency)
    age = parse(inputs.decided_at) - parse(payee.created_at)
    if payee.velocity.in_lifetime.count > 0 or age > NEW_USER_AGE or inputs.amount_minor < large:
        return None
    return Reason(
        "first_large_funding",
        50,
        f"first funding of a user created {age.days} days ago is {inputs.amount_minor} (>= {large})",
    )


def high_risk_country(inputs: AmlInputs) -> Reason | None:
    """A party of a payment (between users, or a cardholder paying a merchant) resides in a FATF increased-monitoring
    jurisdiction."""
    if inputs.operation not in OUTGOING_PAYMENTS:
        return None
    listed = sorted(
        {
            party.country
            for party in (inputs.payer, inputs.payee)
            if party and party.country in FATF_INCREASED_MONITORING
        }
    )
    if not listed:
        return None
    return Reason(
        "high_risk_country",
        50,
        f"a party resides in {', '.join(listed)} (FATF increased monitoring as of {FATF_INCREASED_MONITORING_AS_OF})",
    )


def pass_through(velocity: Velocity, currency: str) -> Reason | None:
    """The AML sweep's rule over a user's last 30 days (not a request): large amounts flow in and almost all of it
    flows out again, the pattern of a pass-through or mule account that no single request shows."""
    received, sent = velocity.in_30d.amount_minor, velocity.out_30d.amount_minor
    if received < units_minor(PASS_THROUGH_MIN_IN_UNITS, currency) or sent * 100 < received * PASS_THROUGH_PERCENT:
        return None
    return Reason(
        "pass_through_30d",
        REVIEW_AT,
        f"{sent} of {received} minor units received in {currency} in 30 days left again (>= {PASS_THROUGH_PERCENT} %)",
    )
