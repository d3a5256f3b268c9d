"""AML rules and rolling-window velocity as pure functions (moncore.domain.aml, moncore.domain.velocity)."""

from __future__ import annotations

from moncore.domain.aml import (
    AmlInputs,
    Decision,
    Operation,
    Party,
    evaluate,
    units_minor,
)
from moncore.domain.velocity import Direction, Velocity, VelocityCharge, Window, stale_attributes, summarize

NOW = "2026-11-22T12:07:30.000000Z"
EUR = 100


def party(country: str = "FR", velocity: Velocity | None = None, created_at: str = "2026-01-01T00:00:00Z") -> Party:
    return Party("usr_1", country, "tier_0", created_at, velocity or Velocity())


def transfer(amount_minor: int, payer: Party | None = None, payee: Party | None = None) -> AmlInputs:
    return AmlInputs(Operation.TRANSFER, amount_minor, "EUR", NOW, payer or party(), payee or party())


def rules(inputs: AmlInputs) -> list[str]:
    return [reason.rule for reason in evaluate(inputs).reasons]


def test_an_ordinary_payment_is_allowed_with_score_zero() -> None:
    decided = evaluate(transfer(50 * EUR))
    assert (decided.decision, decided.score, decided.reasons) == (Decision.ALLOW, 0, ())


def test_rapid_in_and_out_needs_enough_money_in_and_most_of_it_out() -> None:
    arrived = Velocity(in_1h=Window(1, 1_000 * EUR))
    assert rules(transfer(900 * EUR, payer=party(velocity=arrived))) == ["rapid_in_out"]
    assert rules(transfer(899 * EUR, payer=party(velocity=arrived))) == []  # below 90 % of what arrived
    small = Velocity(in_1h=Window(1, 400 * EUR))
    assert rules(transfer(400 * EUR, payer=party(velocity=small))) == []  # below the 500 minimum
    sent_before = Velocity(in_1h=Window(1, 1_000 * EUR), out_1h=Window(2, 800 * EUR))
    assert rules(transfer(100 * EUR, payer=party(velocity=sent_before))) == ["rapid_in_out"]


def test_structuring_is_a_just_below_threshold_payment_after_others_the_same_day() -> None:
    earlier = Velocity(out_24h=Window(1, 200 * EUR))
    assert rules(transfer(950 * EUR, payer=party(velocity=earlier))) == ["structuring"]
    assert rules(transfer(950 * EUR)) == []  # nothing earlier today
    assert rules(transfer(1_000 * EUR, payer=party(velocity=earlier))) == []  # at the threshold: not below it
    assert rules(transfer(899 * EUR, payer=party(velocity=earlier))) == []  # not "just" below
    assert evaluate(transfer(950 * EUR, payer=party(velocity=earlier))).decision is Decision.REVIEW


def test_card_purchases_and_withdrawals_are_scored_as_outgoing_payments() -> None:
    def outgoing(operation: Operation, amount_minor: int, payer: Party) -> list[str]:
        return rules(AmlInputs(operation, amount_minor, "EUR", NOW, payer, None))

    arrived = party(velocity=Velocity(in_1h=Window(1, 1_000 * EUR)))
    assert outgoing(Operation.WITHDRAWAL, 900 * EUR, arrived) == ["rapid_in_out"]  # passed on to another account
    assert outgoing(Operation.CARD_AUTHORIZATION, 900 * EUR, arrived) == []  # top up and spend: a prepaid card's use
    earlier = party(velocity=Velocity(out_24h=Window(1, 200 * EUR)))
    assert outgoing(Operation.CARD_AUTHORIZATION, 950 * EUR, earlier) == ["structuring"]
    assert outgoing(Operation.WITHDRAWAL, 950 * EUR, earlier) == ["structuring"]
    assert outgoing(Operation.CARD_AUTHORIZATION, 10 * EUR, party("MC")) == ["high_risk_country"]
    assert outgoing(Operation.FX_CONVERSION, 950 * EUR, earlier) == []  # the user's own money stays the user's


def test_first_large_funding_of_a_new_user() -> None:
    new = party(created_at="2026-11-20T00:00:00Z")
    funding = AmlInputs(Operation.FUNDING, 10_000 * EUR, "EUR", NOW, None, new)
    assert rules(funding) == ["first_large_funding"]
    funded_before = party(created_at="2026-11-20T00:00:00Z", velocity=Velocity(in_lifetime=Window(1, 10)))
    assert rules(AmlInputs(Operation.FUNDING, 10_000 * EUR, "EUR", NOW, None, funded_before)) == []
    old = party(created_at="2026-09-01T00:00:00Z")
    assert rules(AmlInputs(Operation.FUNDING, 10_000 * EUR, "EUR", NOW, None, old)) == []
    assert rules(AmlInputs(Operation.FUNDING, 9_999 * EUR, "EUR", NOW, None, new)) == []


def test_high_risk_country_and_two_flags_block() -> None:
    assert rules(transfer(10 * EUR, payee=party("BG"))) == ["high_risk_country"]
    assert rules(transfer(10 * EUR, payer=party("MC"))) == ["high_risk_country"]
    earlier = Velocity(out_24h=Window(1, 200 * EUR))
    both = evaluate(transfer(950 * EUR, payer=party(velocity=earlier), payee=party("BG")))
    assert (both.decision, both.score) == (Decision.BLOCK, 110)


def test_the_inputs_hash_changes_with_any_input_and_names_the_ruleset() -> None:
    one, two = evaluate(transfer(10 * EUR)), evaluate(transfer(11 * EUR))
    assert one.inputs_hash != two.inputs_hash and len(one.inputs_hash) == 64
    assert one.record()["ruleset"] == "aml-2026.11-2" == one.inputs.record()["ruleset"]


def test_thresholds_scale_per_currency_in_minor_units() -> None:
    assert units_minor(1_000, "EUR") == 100_000
    assert units_minor(1_000, "JPY") == 160_000  # exponent 0, ~160 yen per euro
    assert units_minor(1_000, "BHD") == 400_000  # exponent 3
    assert units_minor(1_000, "HUF") == 100_000  # not in the table: scaled by its exponent (2)


def test_velocity_windows_slide_at_bucket_granularity() -> None:
    charge = VelocityCharge("usr_1", "EUR", Direction.OUT, 500, "2026-11-22T11:10:00Z")
    attributes = dict(charge.additions())
    assert attributes["oc_m202611221110"] == 1 and attributes["oa_h2026112211"] == 500
    # 57 minutes later the 11:10 five-minute bucket is still in the hour window, 62 minutes later it is not.
    assert summarize(attributes, "2026-11-22T12:07:00Z").out_1h == Window(1, 500)
    later = summarize(attributes, "2026-11-22T12:12:00Z")
    assert later.out_1h == Window() and later.out_24h == Window(1, 500) and later.out_lifetime == Window(1, 500)
    assert summarize(attributes, "2026-12-22T12:00:00Z").out_30d == Window()  # 30 days on: out of every window
    assert summarize(attributes, "2026-12-22T12:00:00Z").out_lifetime == Window(1, 500)


def test_stale_buckets_are_those_outside_every_window_and_never_the_lifetime() -> None:
    charge = VelocityCharge("usr_1", "EUR", Direction.IN, 700, "2026-11-22T11:10:00Z")
    attributes = dict(charge.additions()) | {"expires_at": 1, "tenant_id": 0}
    stale = stale_attributes(attributes, "2026-11-22T12:12:00Z")
    assert stale == ("ia_m202611221110", "ic_m202611221110")
    assert stale_attributes(attributes, "2026-11-22T11:30:00Z") == ()
