"""What the kernel does with screening matches (compliance/screening/policy.py, gate.movement_refusal): confirmed vs
possible, contradicting dates of birth and countries, remembered false positives, the lists version, and the refusal
of money movements of users under review. Pure rules, with the real engine over the shipped lists.

Subjects (read from the files): OFAC 18632 "KONIG, Emilie" and UN QDi.340 "EMILIE EDWIGE KONIG" (French, born
1984-12-09); OFAC 18637 "HAUCHARD, Maxime" and UN QDi.378 "MAXIME HAUCHARD" (French, born 1992-03-17, UN alias "Abou
Abdallah al Faransi"); OFAC 17294 / UN QDi.388 "BENGHALEM, Salim" (French); UN QDi.341 "KEVIN JORDAN AXEL GUIAVARCH"
(French); OFAC 22790 "MADURO MOROS, Nicolas" (Venezuelan).
"""

from __future__ import annotations

import pytest

from moncore.compliance.screening import Match, ScreeningEngine, Watchlist, default_engine
from moncore.compliance.screening.gate import movement_refusal
from moncore.compliance.screening.policy import (
    BLOCK_NAME_SCORE,
    ScreeningStatus,
    case_reason,
    classify,
    hit_of,
    lists_version,
    status_of,
)
from moncore.compliance.screening.scoring import Modifier
from moncore.compliance.screening.watchlists import watchlist_of
from moncore.domain.errors import ComplianceBlocked
from moncore.store.models import UserItem, WatchlistItem

KONIG = ("ofac_sdn", "18632")
HAUCHARD_OFAC, HAUCHARD_UN = ("ofac_sdn", "18637"), ("un_consolidated", "QDi.378")
VERSION = "0123456789abcdef.w0"


@pytest.fixture(scope="module")
def engine() -> ScreeningEngine:
    return default_engine()


def verdict_of(engine: ScreeningEngine, name: str, **kwargs: str) -> ScreeningStatus:
    return classify(engine.screen(name, country="FR", **kwargs), lists_version=VERSION).status


@pytest.mark.parametrize(
    "name",
    [
        "Émilie König",  # accented spelling of OFAC's "KONIG, Emilie"
        "Abou Abdallah al Faransi",  # a UN alias of Maxime Hauchard
        "Benghalem Salim",  # reordered
        "PETER CHERIF",  # exact, upper case
    ],
)
def test_listed_names_of_french_nationals_are_confirmed_for_a_french_user(engine: ScreeningEngine, name: str) -> None:
    assert verdict_of(engine, name) is ScreeningStatus.CONFIRMED


def test_a_contradicting_date_of_birth_leaves_an_exact_name_possible(engine: ScreeningEngine) -> None:
    assert verdict_of(engine, "Maxime Hauchard", date_of_birth="1992-03-17") is ScreeningStatus.CONFIRMED
    verdict = classify(
        engine.screen("Maxime Hauchard", country="FR", date_of_birth="1990-01-01"), lists_version=VERSION
    )
    assert verdict.status is ScreeningStatus.PENDING_REVIEW
    assert {hit.key for hit in verdict.hits} == {HAUCHARD_OFAC, HAUCHARD_UN}
    assert all(not hit.confirmed and "differs from the listed" in hit.why for hit in verdict.hits)
    # a date within a year of the listed one is no contradiction
    assert verdict_of(engine, "Maxime Hauchard", date_of_birth="1993-01-01") is ScreeningStatus.CONFIRMED


def test_a_country_that_is_none_of_the_entrys_is_a_contradiction(engine: ScreeningEngine) -> None:
    maduro_in_france = classify(engine.screen("Nicolas Maduro Moros", country="FR"), lists_version=VERSION)
    assert maduro_in_france.status is ScreeningStatus.PENDING_REVIEW  # name exact, nationality VE only
    assert "is not a listed nationality" in maduro_in_france.hits[0].why
    in_venezuela = classify(engine.screen("Nicolas Maduro Moros", country="VE"), lists_version=VERSION)
    assert in_venezuela.status is ScreeningStatus.CONFIRMED


@pytest.mark.parametrize("name", ["Kevin Jordan Guiavarch", "Salim Benghalm", "Maxime Hochard"])
def test_a_missing_name_or_a_typo_is_only_possible(engine: ScreeningEngine, name: str) -> None:
    verdict = classify(engine.screen(name, country="FR"), lists_version=VERSION)
    assert verdict.status is ScreeningStatus.PENDING_REVIEW
    assert all(hit.name_score < BLOCK_NAME_SCORE for hit in verdict.hits)


@pytest.mark.parametrize("name", ["Ada Lovelace", "Alice Martin", "Jean Dupont", "Odile Vantrier"])
def test_ordinary_names_are_clear(engine: ScreeningEngine, name: str) -> None:
    assert verdict_of(engine, name) is ScreeningStatus.CLEAR


def _match(name_score: float, *deltas: float, entry_id: str = "1", score: float | None = None) -> Match:
    modifiers = tuple(Modifier(delta, f"modifier {delta:+.2f}") for delta in deltas)
    total = score if score is not None else round(name_score + sum(deltas), 4)
    return Match("ofac_sdn", entry_id, "X", "X", total, "possible", "", name_score, modifiers)


def test_the_confirmed_rule_on_name_score_and_contradictions() -> None:
    assert hit_of(_match(1.0)).confirmed
    assert hit_of(_match(BLOCK_NAME_SCORE, 0.03)).confirmed
    assert not hit_of(_match(0.94, 0.05)).confirmed  # a matching date cannot lift a different name into a block
    assert not hit_of(_match(1.0, -0.15)).confirmed  # contradicting date of birth
    assert not hit_of(_match(1.0, 0.05, -0.03)).confirmed  # contradicting country
    assert hit_of(_match(1.0, 0.0, 0.0)).confirmed  # "none listed" modifiers contradict nothing


def test_remembered_false_positives_are_suppressed_and_a_new_entry_still_hits() -> None:
    matches = [_match(1.0, entry_id="1"), _match(0.9, entry_id="2")]
    verdict = classify(matches, lists_version=VERSION, false_positives={("ofac_sdn", "1")})
    assert verdict.suppressed == (("ofac_sdn", "1"),)
    assert [hit.entry_id for hit in verdict.hits] == ["2"]
    assert verdict.status is ScreeningStatus.PENDING_REVIEW
    everything = classify(matches, lists_version=VERSION, false_positives={("ofac_sdn", "1"), ("ofac_sdn", "2")})
    assert everything.status is ScreeningStatus.CLEAR and everything.hits == ()
    assert everything.record()["suppressed_false_positives"] == ["ofac_sdn:1", "ofac_sdn:2"]
    below = classify([Match("ofac_sdn", "3", "X", "X", 0.5, None, "", 0.5)], lists_version=VERSION)
    assert below.status is ScreeningStatus.CLEAR  # scores below the possible threshold are not hits


def test_the_lists_version_moves_with_the_files_and_the_watchlist() -> None:
    assert lists_version("a" * 64, 0) == "aaaaaaaaaaaaaaaa.w0"
    assert lists_version("a" * 64, 1) != lists_version("a" * 64, 0)
    assert lists_version("b" * 64, 0) != lists_version("a" * 64, 0)
    assert default_engine().lists_digest and len(default_engine().lists_digest) == 64


def test_case_reason_names_every_hit_with_list_entry_and_score(engine: ScreeningEngine) -> None:
    verdict = classify(
        engine.screen("Maxime Hauchard", country="FR", date_of_birth="1990-01-01"), lists_version=VERSION
    )
    reason = case_reason("user usr_1", verdict, context="user creation")
    assert reason.startswith("possible sanctions screening match for user usr_1 at user creation")
    assert "ofac_sdn entry 18637" in reason and "un_consolidated entry QDi.378" in reason and "score 0.88" in reason


def _user(status: str | None, case_id: str | None = None) -> UserItem:
    return UserItem(
        "t1#usr_1",
        id="usr_1",
        tenant_id="t1",
        external_ref="r",
        full_name="N",
        country="FR",
        tier="tier_0",
        status="ACTIVE",
        created_at="2026-01-01T00:00:00.000000Z",
        screening_status=status,
        screening_case_id=case_id,
    )


def test_movement_refusal_is_pure_over_the_user_item() -> None:
    assert status_of(None) is ScreeningStatus.CLEAR
    assert movement_refusal(_user(None)) is None  # users created before screening was wired
    assert movement_refusal(_user("clear")) is None
    pending = movement_refusal(_user("pending_review", "case_9"))
    assert isinstance(pending, ComplianceBlocked) and pending.code == "compliance_blocked" and pending.status == 422
    assert "user usr_1" in pending.detail and "case case_9" in pending.detail and "under review" in pending.detail
    confirmed = movement_refusal(_user("confirmed", "case_7"))
    assert confirmed is not None and "confirmed sanctions screening match (case case_7)" in confirmed.detail
    assert confirmed.errors == [
        {"loc": ["user_id"], "msg": "screening_status confirmed", "user_id": "usr_1", "case_id": "case_7"}
    ]


def test_inactive_watchlist_entries_are_not_screened(engine: ScreeningEngine) -> None:
    def entry(entry_id: str, name: str, *, active: bool) -> WatchlistItem:
        return WatchlistItem("t1#watchlist", f"entry#{entry_id}", tenant_id="t1", entry_id=entry_id, name=name,
                             aliases=["O. Vantrier"], country="FR", active=active)  # fmt: skip

    watchlist = watchlist_of([entry("e1", "Odile Vantrier", active=True), entry("e2", "Jean Dupont", active=False)])
    assert isinstance(watchlist, Watchlist) and [e.entry_id for e in watchlist.entries] == ["e1"]
    matches = engine.screen("Odile Vantrier", country="FR", watchlists=[watchlist])
    assert [(m.list, m.entry_id) for m in matches] == [("tenant:watchlist", "e1")]
    assert classify(matches, lists_version=VERSION).status is ScreeningStatus.CONFIRMED
    assert engine.screen("Jean Dupont", country="FR", watchlists=[watchlist]) == []
