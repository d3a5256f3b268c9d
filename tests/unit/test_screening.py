"""Sanctions screening against the shipped OFAC SDN and UN lists (../shared/data/sanctions): normalisation, loaders,
listed people and entities found under their aliases and under reordered, accented, punctuated and misspelt names,
date-of-birth and country modifiers, innocent names not matched, sorting, tenant watchlists, pair scores.

Test subjects were picked by reading the files: OFAC 22790 "MADURO MOROS, Nicolas" (DOB 23 Nov 1962, citizen
Venezuela), OFAC 306 "BANCO NACIONAL DE CUBA" (aka NATIONAL BANK OF CUBA in ofac_alt.csv), OFAC 6365 "BIN LADIN,
Usama bin Muhammad bin Awad" (aka BIN LADEN, Osama), OFAC 4697 "HIZBALLAH", OFAC 20157 "KIM, Jong Un", UN QDi.006
"AIMAN MUHAMMED RABI AL-ZAWAHIRI" (alias Ayman Al-Zawahari, DOB 1951-06-19, Egypt), UN CDi.005 "JÉRÔME KAKWAVU
BUKANDE", UN CDe.001 "ADF" (a.k.a. Allied Democratic Forces), UN QDe.004 "AL-QAIDA", UN CDi.001 "ERIC BADEGE" (born
1971, year only).
"""

from __future__ import annotations

from typing import Any

import pytest

from moncore.compliance.screening import (
    CONFIRMED_THRESHOLD,
    POSSIBLE_THRESHOLD,
    Match,
    ScreeningEngine,
    Watchlist,
    default_engine,
)
from moncore.compliance.screening.index import ScreeningIndex
from moncore.compliance.screening.lists import (
    WatchlistEntry,
    country_code,
    load_lists,
    sanctions_dir,
)
from moncore.compliance.screening.normalize import tokens

MADURO = ("ofac_sdn", "22790")
BANCO_NACIONAL = ("ofac_sdn", "306")
BIN_LADIN = ("ofac_sdn", "6365")
HIZBALLAH = ("ofac_sdn", "4697")
KIM_JONG_UN = ("ofac_sdn", "20157")
ZAWAHIRI = ("un_consolidated", "QDi.006")
KAKWAVU = ("un_consolidated", "CDi.005")
ADF = ("un_consolidated", "CDe.001")
AL_QAIDA = ("un_consolidated", "QDe.004")
BADEGE = ("un_consolidated", "CDi.001")


@pytest.fixture(scope="module")
def engine() -> ScreeningEngine:
    return default_engine()


@pytest.fixture(scope="module")
def entries(engine: ScreeningEngine) -> dict[tuple[str, str], WatchlistEntry]:
    return {(entry.list_name, entry.entry_id): entry for entry in engine.index.entries}


def found(matches: list[Match], key: tuple[str, str]) -> Match | None:
    return next((match for match in matches if (match.list, match.entry_id) == key), None)


# ---- normalisation


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("José María PÉREZ-López", ("jose", "maria", "perez", "lopez")),
        ("MADURO MOROS, Nicolas", ("nicolas", "maduro", "moros")),  # OFAC's "LAST, First"
        ("ANGLO-CARIBBEAN CO., LTD.", ("anglo", "caribean", "co", "ltd")),  # a legal form after the comma stays
        ("Dr. Ayman al-Zawahiri", ("aiman", "al", "zawahiri")),  # honorific dropped, y -> i
        ("C.M.V. CARNES S.A.S.", ("cmv", "carnes", "sas")),  # dotted acronyms joined
        ("GAMA'AT", ("gamat",)),  # apostrophe dropped, doubled letter once
        ("Muammar Qadhafi", ("muamar", "kadafi")),
    ],
)
def test_tokens(name: str, expected: tuple[str, ...]) -> None:
    assert tokens(name) == expected


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Владимир Путин", "Vladimir Putin"),  # Cyrillic transliterated
        ("Zoë Müller", "ZOE MULLER"),  # accents and case
        ("Mohamed Abdel Rahman", "Muhammad Abd al-Rahman"),  # transliteration families, "abd al"
        ("Usama bin Ladin", "Osama bin Ladin"),
        ("Husayn Khan", "Hussein Han"),  # husayn family, kh -> h
        ("Jean-Pierre O'Neil", "jean pierre oneil"),
    ],
)
def test_spellings_that_normalise_alike(one: str, other: str) -> None:
    assert tokens(one) == tokens(other)


# ---- loaders


def test_ofac_entries_with_aliases_dates_and_countries(entries: dict[tuple[str, str], WatchlistEntry]) -> None:
    maduro = entries[MADURO]
    assert maduro.name == "MADURO MOROS, Nicolas" and maduro.party == "individual"
    assert [str(date) for date in maduro.dates_of_birth] == ["1962-11-23"]
    assert maduro.nationalities == ("VE",)
    banco = entries[BANCO_NACIONAL]
    assert banco.party == "entity"
    assert ("NATIONAL BANK OF CUBA", "aka") in [(name.text, name.kind) for name in banco.names]
    assert {"CH", "ES", "JP"} <= set(banco.countries)  # from ofac_add.csv
    assert "BIN LADEN, Osama" in [name.text for name in entries[BIN_LADIN].names]


def test_un_entries_with_aliases_dates_and_countries(entries: dict[tuple[str, str], WatchlistEntry]) -> None:
    zawahiri = entries[ZAWAHIRI]
    assert zawahiri.name == "AIMAN MUHAMMED RABI AL-ZAWAHIRI"
    assert "Ayman Al-Zawahari" in [name.text for name in zawahiri.names]
    assert [str(date) for date in zawahiri.dates_of_birth] == ["1951-06-19"]
    assert zawahiri.nationalities == ("EG",)
    adf = entries[ADF]
    assert adf.party == "entity"
    assert "Allied Democratic Forces" in [name.text for name in adf.names]
    assert [str(date) for date in entries[BADEGE].dates_of_birth] == ["1971"]


def test_vessels_and_aircraft_are_not_indexed(entries: dict[tuple[str, str], WatchlistEntry]) -> None:
    # ofac_sdn.csv: 4234 "HERMANN" is a vessel (a person named Hermann must not hit it)
    assert ("ofac_sdn", "4234") not in entries
    assert {entry.party for entry in entries.values()} == {"individual", "entity"}
    assert len([key for key in entries if key[0] == "ofac_sdn"]) > 8000
    assert len([key for key in entries if key[0] == "un_consolidated"]) > 1000


@pytest.mark.parametrize(
    ("name", "code"),
    [("Iran (Islamic Republic of)", "IR"), ("Korea, North", "KP"), ("Russian Federation", "RU"), ("Atlantis", None)],
)
def test_country_names_as_the_lists_write_them(name: str, code: str | None) -> None:
    assert country_code(name) == code


def test_sanctions_dir_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # Through the module as imported now: the local stack fixtures may have re-imported moncore in this process, and
    # the settings cache to clear is the one the lists module reads.
    from moncore.compliance.screening import lists

    assert lists.list_files(lists.sanctions_dir())  # the shared reference data, or the snapshot bundled in the layer
    monkeypatch.setenv("MONCORE_SANCTIONS_DIR", str(tmp_path))
    lists.settings.cache_clear()
    try:
        assert lists.sanctions_dir() == tmp_path
        with pytest.raises(lists.ListsNotFound):
            lists.list_files(lists.sanctions_dir())
    finally:
        monkeypatch.delenv("MONCORE_SANCTIONS_DIR")
        lists.settings.cache_clear()


# ---- listed people and entities are found


@pytest.mark.parametrize(
    ("query", "key", "decision"),
    [
        ("MADURO MOROS, Nicolas", MADURO, "confirmed"),  # exact
        ("Nicolas Maduro Moros", MADURO, "confirmed"),  # natural order
        ("Moros Nicolas Maduro", MADURO, "confirmed"),  # reordered
        ("Nicolás Madúro Morós", MADURO, "confirmed"),  # accents added
        ("nicolas maduro-moros", MADURO, "confirmed"),  # case and punctuation
        ("Nicolas Madruo Moros", MADURO, "confirmed"),  # a typo (transposition)
        ("Nicolas Maduro", MADURO, "possible"),  # a name left out
        ("National Bank of Cuba", BANCO_NACIONAL, "confirmed"),  # OFAC alias (ofac_alt.csv)
        ("banco nacional de cuba", BANCO_NACIONAL, "confirmed"),  # entity, case
        ("Osama bin Laden", BIN_LADIN, "confirmed"),  # OFAC alias
        ("Usama bin Ladin", BIN_LADIN, "confirmed"),
        ("Hizballah", HIZBALLAH, "confirmed"),
        ("Hezbollah", HIZBALLAH, "possible"),  # transliteration of the vowels
        ("Kim Jong-un", KIM_JONG_UN, "confirmed"),
        ("Ayman Al-Zawahari", ZAWAHIRI, "confirmed"),  # UN alias
        ("Zawahiri, Aiman Muhammed Rabi", ZAWAHIRI, "confirmed"),  # UN primary name, reordered
        ("Jerome Kakwavu Bukande", KAKWAVU, "confirmed"),  # accents removed (listed as JÉRÔME)
        ("Allied Democratic Forces", ADF, "confirmed"),  # UN entity alias
        ("Al Qaeda", AL_QAIDA, "confirmed"),  # UN entity alias / transliteration
    ],
)
def test_listed_names_are_found(engine: ScreeningEngine, query: str, key: tuple[str, str], decision: str) -> None:
    match = found(engine.screen(query), key)
    assert match is not None, f"{query!r} did not find {key}"
    assert match.decision == decision, match.explanation
    assert POSSIBLE_THRESHOLD <= match.score <= 1.0
    assert match.score == round(match.score, 4)


def test_a_match_names_the_entry_the_alias_and_why(engine: ScreeningEngine) -> None:
    match = found(engine.screen("National Bank of Cuba"), BANCO_NACIONAL)
    assert match is not None
    assert match.to_dict() == {
        "list": "ofac_sdn",
        "entry_id": "306",
        "name": "BANCO NACIONAL DE CUBA",
        "matched_name": "NATIONAL BANK OF CUBA",
        "score": 1.0,
        "decision": "confirmed",
        "explanation": match.explanation,
    }
    assert "aka 'NATIONAL BANK OF CUBA' of OFAC SDN entry 306" in match.explanation
    assert "national=national" in match.explanation and "cuba=cuba" in match.explanation
    partial = found(engine.screen("Nicolas Maduro"), MADURO)
    assert partial is not None and "not in the query: moros" in partial.explanation


# ---- modifiers


def test_date_of_birth_raises_and_lowers_the_score(engine: ScreeningEngine) -> None:
    plain = found(engine.screen("Nicolas Maduro"), MADURO)
    same_day = found(engine.screen("Nicolas Maduro", date_of_birth="1962-11-23"), MADURO)
    other = found(engine.screen("Nicolas Maduro", date_of_birth="1990-01-01", min_score=0.5), MADURO)
    assert plain is not None and same_day is not None and other is not None
    assert same_day.score == round(plain.score + 0.05, 4)
    assert "date of birth 1962-11-23 equals the listed 1962-11-23: +0.05" in same_day.explanation
    assert other.score == round(plain.score - 0.15, 4)
    assert "differs from the listed 1962-11-23: -0.15" in other.explanation
    assert found(engine.screen("Nicolas Maduro", date_of_birth="1990-01-01"), MADURO) is None  # below possible now


def test_year_only_date_of_birth(engine: ScreeningEngine) -> None:
    plain = found(engine.screen("Badege Eric"), BADEGE)
    same_year = found(engine.screen("Badege Eric", date_of_birth="1971-05-05"), BADEGE)
    assert plain is not None and same_year is not None
    assert same_year.score == min(1.0, round(plain.score + 0.02, 4))
    assert "is within the listed 1971" in same_year.explanation


def test_country_raises_and_lowers_the_score(engine: ScreeningEngine) -> None:
    plain = found(engine.screen("Nicolas Maduro"), MADURO)
    listed = found(engine.screen("Nicolas Maduro", country="VE"), MADURO)
    other = found(engine.screen("Nicolas Maduro", country="FR", min_score=0.5), MADURO)
    assert plain is not None and listed is not None and other is not None
    assert listed.score == round(plain.score + 0.03, 4) and "country VE is a listed nationality" in listed.explanation
    assert other.score == round(plain.score - 0.03, 4) and "not a listed nationality (VE)" in other.explanation


# ---- false positives


INNOCENT = [
    "John Smith",
    "Maria Garcia",
    "Emma Johnson",
    "Liam O'Connor",
    "Sophie Dubois",
    "Hans Müller",
    "Giulia Rossi",
    "Xiaoming Liu",
    "Priya Sharma",
    "Chinedu Okafor",
    "Yuki Tanaka",
    "Lars Nielsen",
    "Ana Souza",
    "Oliver Brown",
    "Isabella Martinez",
    "Lucas Petit",
    "Mia Schneider",
    "Noah Williams",
    "Chloé Martin",
    "Mateo Fernández",
    "Ingrid Larsen",
    "Aisha Bello",
    "Kenji Watanabe",
    "Olga Ivanova",
    "Pierre Lefebvre",
    "Fatima Zahra Benali",
    "Omar Haddad",
    "Carlos Gomez",
    "Anna Schmidt",
    "Acme Trading Company Ltd",
    "International Bank",
    "Global Logistics Ltd",
]


@pytest.mark.parametrize("name", INNOCENT)
def test_ordinary_names_do_not_match(engine: ScreeningEngine, name: str) -> None:
    matches = engine.screen(name)
    assert matches == [], [(match.matched_name, match.score) for match in matches]


def test_near_misses_stay_below_possible(engine: ScreeningEngine) -> None:
    # another person sharing the given names, and an organisation sharing only generic words
    assert found(engine.screen("Nicolas Perez Moros"), MADURO) is None
    assert found(engine.screen("Banco Comercial de Cuba"), BANCO_NACIONAL) is None


def test_candidate_retrieval_scores_only_a_small_share_of_names(engine: ScreeningEngine) -> None:
    candidates = engine.index.candidates(tokens("Nicolas Maduro Moros"))
    assert any(engine.index.entries[candidate.entry].entry_id == "22790" for candidate in candidates)
    assert len(candidates) < len(engine.index.names) / 20


# ---- sorting, tenant lists, pairs


def test_matches_are_sorted_by_score(engine: ScreeningEngine) -> None:
    matches = engine.screen("Usama bin Laden")
    assert len(matches) >= 2
    assert [match.score for match in matches] == sorted((match.score for match in matches), reverse=True)
    assert (matches[0].list, matches[0].entry_id) == BIN_LADIN


def test_tenant_watchlist_is_screened_with_the_public_lists(engine: ScreeningEngine) -> None:
    watchlist = Watchlist.from_records(
        "acme",
        [
            {"id": "W-1", "name": "Jean-Luc Picard", "aliases": ["Locutus of Borg"], "date_of_birth": "1960-07-13"},
            {"id": "W-2", "name": "Nicolas Maduro Moros", "country": "VE"},
        ],
    )
    assert engine.screen("Jean Luc Picard") == []  # not on the public lists
    picard = engine.screen("Picard, Jean-Luc", date_of_birth="1960-07-13", watchlists=[watchlist])
    assert [(match.list, match.entry_id, match.decision) for match in picard] == [("tenant:acme", "W-1", "confirmed")]
    assert "date of birth 1960-07-13 equals the listed 1960-07-13" in picard[0].explanation
    assert [match.entry_id for match in engine.screen("Locutus of Borg", watchlists=[watchlist])] == ["W-1"]
    both = engine.screen("Nicolas Maduro Moros", watchlists=[watchlist])
    assert [(match.list, match.entry_id) for match in both[:2]] == [MADURO, ("tenant:acme", "W-2")]  # tie: by list


def test_an_index_of_other_entries_uses_the_reference_weights(engine: ScreeningEngine) -> None:
    watchlist = Watchlist.from_records("small", [{"id": "1", "name": "Trading Company Alpha"}])
    index = ScreeningIndex(watchlist.entries, engine.weights)
    assert index.weights is engine.weights
    # "trading" is common on the lists, so it weighs less than "alpha"; "company" is a legal form
    alpha, trading, company = tokens("Alpha Trading Company")
    assert engine.weights(alpha) == 1.0 > engine.weights(trading) > engine.weights(company) == 0.2


@pytest.mark.parametrize(
    ("one", "other", "low", "high"),
    [
        ("Moros Maduro Nicolas", "MADURO MOROS, Nicolas", 1.0, 1.0),
        ("Muammar Gaddafi", "QADHAFI, Muammar", POSSIBLE_THRESHOLD, CONFIRMED_THRESHOLD),
        ("Maria Garcia", "Mario Garza", 0.0, POSSIBLE_THRESHOLD),
        ("Trading Company", "AL-AQSA TRADING COMPANY", 0.0, POSSIBLE_THRESHOLD),
    ],
)
def test_pair_scores(engine: ScreeningEngine, one: str, other: str, low: float, high: float) -> None:
    pair = engine.score_pair(one, other)
    assert low <= pair.score <= high, pair.explanation
    assert pair.explanation.startswith(f"{one!r} vs {other!r}")


def test_loading_twice_gives_the_same_entries() -> None:
    assert load_lists(sanctions_dir())[:50] == list(default_engine().index.entries[:50])


def test_the_bundled_lists_are_an_exact_copy_of_the_shared_reference_data() -> None:
    """The layer ships a snapshot of ../shared/data/sanctions; it must never drift from (or edit) the original."""
    import hashlib
    from pathlib import Path

    from moncore.compliance.screening.lists import BUNDLED_DIR, LIST_FILES

    shared = next(
        (p / "shared" / "data" / "sanctions" for p in Path(__file__).resolve().parents if (p / "shared").is_dir()),
        None,
    )
    for name in LIST_FILES:
        bundled = (BUNDLED_DIR / name).read_bytes()
        assert bundled, name
        if shared is not None:
            assert hashlib.sha256(bundled).digest() == hashlib.sha256((shared / name).read_bytes()).digest(), name
