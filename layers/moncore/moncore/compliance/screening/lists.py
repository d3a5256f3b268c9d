"""Watchlists: the entries screening compares names with, and the loaders of the shipped public lists.

- OFAC SDN, legacy CSV layout (no header; `-0-` is empty): `ofac_sdn.csv` (ent_num, name, type, program, title, ...,
  remarks), `ofac_alt.csv` (ent_num, alt_num, aka|fka|nka, name, remarks), `ofac_add.csv` (ent_num, add_num, address,
  city, country, remarks). Dates of birth, nationality, citizenship and place of birth are parsed from the remarks;
  address countries from ofac_add.csv.
- UN Security Council Consolidated List (XML): INDIVIDUALS (FIRST..FOURTH_NAME, INDIVIDUAL_ALIAS with its quality,
  NAME_ORIGINAL_SCRIPT, INDIVIDUAL_DATE_OF_BIRTH exact/approximate/between, NATIONALITY, address and birth country)
  and ENTITIES (FIRST_NAME, ENTITY_ALIAS, address country). Entry ids are the UN reference numbers ("QDi.001").
- Tenant watchlists: `Watchlist.from_records`, built from the stored entries by watchlists.py.

Only people and organisations are indexed: OFAC's vessels and aircraft are left out, because the names screened here
are users and payment beneficiaries, and vessel names ("HERMANN", "AMBER", "DEVON") would flag ordinary people.
OFAC's "weak" a.k.a.s, which exist only inside the remarks text, are not used either (OFAC itself marks them as less
reliable for screening); every alias of ofac_alt.csv and every UN alias, good or low quality, is.

Where the files are: the `MONCORE_SANCTIONS_DIR` setting; by default the first `shared/data/sanctions` folder found
next to one of this file's ancestors (in the repo that is `../shared/data/sanctions` beside the project root). In a
deployed stack the lists are meant to come from S3 into the function's /tmp (docs/screening.md); not implemented yet.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from moncore.compliance.screening.normalize import fold, parenthesised, without_parentheses
from moncore.config import settings

OFAC_SDN = "ofac_sdn"
UN_CONSOLIDATED = "un_consolidated"
SANCTIONS_DIR_ENV = "MONCORE_SANCTIONS_DIR"
LIST_FILES = ("ofac_sdn.csv", "ofac_alt.csv", "ofac_add.csv", "un_consolidated.xml")

Party = Literal["individual", "entity"]


class ListsNotFound(FileNotFoundError):
    """The sanctions list files are not where the settings say."""


@dataclass(frozen=True, slots=True)
class DateOfBirth:
    """A listed date of birth: an exact day, a month, a year, or a range of years ("between"/"to"); `approximate`
    for "circa"/"approximately" dates."""

    year_from: int
    year_to: int
    month: int | None = None
    day: int | None = None
    approximate: bool = False

    def __str__(self) -> str:
        if self.year_from != self.year_to:
            return f"{self.year_from}..{self.year_to}"
        text = f"{self.year_from}"
        if self.month is not None:
            text += f"-{self.month:02d}"
            if self.day is not None:
                text += f"-{self.day:02d}"
        return f"circa {text}" if self.approximate else text


@dataclass(frozen=True, slots=True)
class ListedName:
    """One name of an entry as the list spells it, and what it is: "primary name", "aka", "fka", "nka", "alias
    (good quality)", "alias (low quality)", "original script", ..."""

    text: str
    kind: str


@dataclass(frozen=True, slots=True)
class WatchlistEntry:
    list_name: str  # "ofac_sdn" | "un_consolidated" | "tenant:<name>"
    entry_id: str
    party: Party
    names: tuple[ListedName, ...]  # names[0] is the primary name
    dates_of_birth: tuple[DateOfBirth, ...] = ()
    nationalities: tuple[str, ...] = ()  # ISO 3166-1 alpha-2: nationality or citizenship
    countries: tuple[str, ...] = ()  # ISO 3166-1 alpha-2: addresses, place of birth
    programs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.names[0].text


@dataclass(frozen=True, slots=True)
class Watchlist:
    """A named set of entries screened together with the public lists, e.g. a tenant's own watchlist."""

    name: str
    entries: tuple[WatchlistEntry, ...] = field(default=())

    @classmethod
    def from_records(cls, name: str, records: Iterable[Mapping[str, Any]]) -> Watchlist:
        """Entries from plain records: {id, name, aliases?: [str], party?: individual|entity, date_of_birth?:
        YYYY[-MM[-DD]], country?: alpha-2}. Their list is "tenant:<name>"."""
        list_name = f"tenant:{name}"
        entries = []
        for record in records:
            names = [ListedName(str(record["name"]), "primary name")]
            names += [ListedName(str(alias), "alias") for alias in record.get("aliases", ())]
            born = record.get("date_of_birth")
            country = record.get("country")
            entries.append(
                WatchlistEntry(
                    list_name=list_name,
                    entry_id=str(record["id"]),
                    party=record.get("party", "individual"),
                    names=tuple(names),
                    dates_of_birth=(_iso_date(str(born)),) if born else (),
                    nationalities=(str(country),) if country else (),
                )
            )
        return cls(name=name, entries=tuple(entries))


BUNDLED_DIR = Path(__file__).resolve().parent / "data"  # the snapshot shipped in the layer (see its README)


def sanctions_dir() -> Path:
    """MONCORE_SANCTIONS_DIR (settings().sanctions_dir) if set, else `shared/data/sanctions` beside the nearest
    ancestor of this file that has one (the workspace's reference data), else the snapshot bundled in the layer."""
    configured = settings().sanctions_dir
    if configured:
        return Path(configured)
    for ancestor in Path(__file__).resolve().parents:
        candidate = ancestor / "shared" / "data" / "sanctions"
        if candidate.is_dir():
            return candidate
    if BUNDLED_DIR.is_dir():
        return BUNDLED_DIR
    raise ListsNotFound(f"no sanctions lists found; set {SANCTIONS_DIR_ENV} to the folder holding {LIST_FILES}")


def list_files(directory: Path) -> list[Path]:
    paths = [directory / name for name in LIST_FILES]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ListsNotFound(f"missing sanctions list files: {', '.join(missing)}")
    return paths


def load_lists(directory: Path) -> list[WatchlistEntry]:
    return [*load_ofac(directory), *load_un(directory / "un_consolidated.xml")]


# ---- OFAC SDN (legacy CSV)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DATE = r"(?:(\d{1,2}) )?(?:([A-Z][a-z]{2}) )?(\d{4})"
_OFAC_DOB = re.compile(rf"\bDOB (circa )?{_DATE}(?: to {_DATE})?")
_OFAC_NATIONALITY = re.compile(r"\b(?:[Nn]ationality|[Cc]itizen) ([^;]+)")
_OFAC_BIRTHPLACE = re.compile(r"\bPOB ([^;]+)")


def _ofac_rows(path: Path) -> Iterable[list[str]]:
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 2:  # the files end with a DOS end-of-file byte on a row of its own
                yield [_ofac_cell(cell) for cell in row]


def _ofac_cell(cell: str) -> str:
    cell = cell.strip()
    return "" if cell == "-0-" else cell


def load_ofac(directory: Path) -> list[WatchlistEntry]:
    aliases: dict[str, list[ListedName]] = defaultdict(list)
    for row in _ofac_rows(directory / "ofac_alt.csv"):
        if len(row) >= 4 and row[3]:
            aliases[row[0]].append(ListedName(row[3], row[2].lower() or "aka"))
    address_countries: dict[str, list[str]] = defaultdict(list)
    for row in _ofac_rows(directory / "ofac_add.csv"):
        code = country_code(row[4]) if len(row) >= 5 else None
        if code:
            address_countries[row[0]].append(code)
    entries = []
    for row in _ofac_rows(directory / "ofac_sdn.csv"):
        ent_num, name, kind = row[0], row[1], row[2] if len(row) > 2 else ""
        if kind in {"vessel", "aircraft"} or not name:
            continue
        party: Party = "individual" if kind == "individual" else "entity"
        remarks = row[11] if len(row) > 11 else ""
        names = [ListedName(name, "primary name"), *_derived_names(name, party), *aliases.get(ent_num, ())]
        birth_countries = [country_code(place.rsplit(",", 1)[-1]) for place in _OFAC_BIRTHPLACE.findall(remarks)]
        entries.append(
            WatchlistEntry(
                list_name=OFAC_SDN,
                entry_id=ent_num,
                party=party,
                names=_unique(names),
                dates_of_birth=tuple(_ofac_dates(remarks)),
                nationalities=_codes(_OFAC_NATIONALITY.findall(remarks)),
                countries=_codes([*address_countries.get(ent_num, ()), *filter(None, birth_countries)]),
                programs=tuple(part for part in (row[3] if len(row) > 3 else "").strip("[]").split("] [") if part),
            )
        )
    return entries


def _ofac_dates(remarks: str) -> Iterable[DateOfBirth]:
    for circa, day, month, year, _, _, year_to in _OFAC_DOB.findall(remarks):
        if year_to:
            yield DateOfBirth(int(year), int(year_to), approximate=bool(circa))
            continue
        month_number = _MONTHS.get(month.lower()) if month else None
        yield DateOfBirth(
            int(year),
            int(year),
            month=month_number,
            day=int(day) if day and month_number else None,
            approximate=bool(circa),
        )


# ---- UN consolidated list (XML)


def load_un(path: Path) -> list[WatchlistEntry]:
    """The UN list is parsed with the standard library's ElementTree: the file is shipped, trusted input (never
    user-supplied), so entity-expansion attacks are out of scope; a list fetched at run time from elsewhere would
    need defusedxml."""
    root = ET.parse(path).getroot()  # noqa: S314 - trusted, shipped input (see the docstring)
    entries = []
    for person in root.iter("INDIVIDUAL"):
        parts = (_text(person, tag) for tag in ("FIRST_NAME", "SECOND_NAME", "THIRD_NAME", "FOURTH_NAME"))
        primary = " ".join(part for part in parts if part)
        if not primary:
            continue
        names = [ListedName(primary, "primary name"), *_derived_names(primary, "individual")]
        names += _un_aliases(person.iter("INDIVIDUAL_ALIAS"))
        original = _text(person, "NAME_ORIGINAL_SCRIPT")
        if original:
            names.append(ListedName(original, "original script"))
        places = [_text(place, "COUNTRY") for place in person.iter("INDIVIDUAL_PLACE_OF_BIRTH")]
        addresses = [_text(address, "COUNTRY") for address in person.iter("INDIVIDUAL_ADDRESS")]
        entries.append(
            WatchlistEntry(
                list_name=UN_CONSOLIDATED,
                entry_id=_text(person, "REFERENCE_NUMBER") or _text(person, "DATAID"),
                party="individual",
                names=_unique(names),
                dates_of_birth=tuple(_un_dates(person)),
                nationalities=_codes(_text(value) for value in person.iterfind("NATIONALITY/VALUE")),
                countries=_codes([*places, *addresses]),
                programs=(_text(person, "UN_LIST_TYPE"),),
            )
        )
    for entity in root.iter("ENTITY"):
        listed = [part.strip() for part in _text(entity, "FIRST_NAME").split(";") if part.strip()]
        if not listed:
            continue
        names = [ListedName(listed[0], "primary name"), *(ListedName(other, "name") for other in listed[1:])]
        for text in listed:
            names += _derived_names(text, "entity")
        names += _un_aliases(entity.iter("ENTITY_ALIAS"))
        original = _text(entity, "NAME_ORIGINAL_SCRIPT")
        if original:
            names.append(ListedName(original, "original script"))
        entries.append(
            WatchlistEntry(
                list_name=UN_CONSOLIDATED,
                entry_id=_text(entity, "REFERENCE_NUMBER") or _text(entity, "DATAID"),
                party="entity",
                names=_unique(names),
                countries=_codes(_text(address, "COUNTRY") for address in entity.iter("ENTITY_ADDRESS")),
                programs=(_text(entity, "UN_LIST_TYPE"),),
            )
        )
    return entries


def _text(element: ET.Element, tag: str | None = None) -> str:
    node = element if tag is None else element.find(tag)
    return " ".join((node.text or "").split()) if node is not None else ""


def _un_aliases(aliases: Iterable[ET.Element]) -> list[ListedName]:
    out = []
    for alias in aliases:
        quality = _text(alias, "QUALITY").lower()
        kind = f"alias ({quality} quality)" if quality in {"good", "low"} else (quality.strip(".") or "alias")
        for text in _text(alias, "ALIAS_NAME").split(";"):
            if text.strip():
                out.append(ListedName(text.strip(), kind))
    return out


def _un_dates(person: ET.Element) -> Iterable[DateOfBirth]:
    for born in person.iter("INDIVIDUAL_DATE_OF_BIRTH"):
        approximate = _text(born, "TYPE_OF_DATE").upper() == "APPROXIMATELY"
        date, year = _text(born, "DATE"), _text(born, "YEAR")
        year_from, year_to = _text(born, "FROM_YEAR"), _text(born, "TO_YEAR")
        if date:
            parsed = _iso_date(date[:10])
            yield DateOfBirth(parsed.year_from, parsed.year_to, parsed.month, parsed.day, approximate)
        elif year.isdigit():
            yield DateOfBirth(int(year), int(year), approximate=approximate)
        elif year_from.isdigit() and year_to.isdigit():
            yield DateOfBirth(int(year_from), int(year_to), approximate=approximate)


def _iso_date(text: str) -> DateOfBirth:
    """YYYY, YYYY-MM or YYYY-MM-DD (a 00 month or day means unknown)."""
    parts = [int(part) for part in text.split("-")[:3]]
    month = parts[1] if len(parts) > 1 and parts[1] else None
    day = parts[2] if len(parts) > 2 and parts[2] and month else None
    return DateOfBirth(parts[0], parts[0], month, day)


# ---- shared helpers


def _derived_names(name: str, party: Party) -> list[ListedName]:
    """Extra spellings a list implies: the name without its "(...)" part, and for organisations the part itself
    (an acronym, or the name in another language)."""
    out = []
    bare = without_parentheses(name)
    if bare and bare != name:
        out.append(ListedName(bare, "name without parentheses"))
        if party == "entity":
            out += [ListedName(part, "name in parentheses") for part in parenthesised(name) if len(part) >= 3]
    return out


def _unique(names: Sequence[ListedName]) -> tuple[ListedName, ...]:
    seen: set[str] = set()
    out = []
    for name in names:
        key = fold(name.text)
        if key not in seen:
            seen.add(key)
            out.append(name)
    return tuple(out)


def _codes(names: Iterable[str]) -> tuple[str, ...]:
    """Country names (or codes) as sorted, unique ISO alpha-2 codes; unknown names are dropped."""
    return tuple(sorted({code for code in (country_code(name) for name in names) if code}))


_COUNTRY_OVERRIDES = {
    "korea north": "KP",
    "north korea": "KP",
    "korea south": "KR",
    "south korea": "KR",
    "burma": "MM",
    "russia": "RU",
    "iran": "IR",
    "syria": "SY",
    "venezuela": "VE",
    "bolivia": "BO",
    "tanzania": "TZ",
    "vietnam": "VN",
    "laos": "LA",
    "moldova": "MD",
    "macau": "MO",
    "macedonia": "MK",
    "turkey": "TR",
    "czech republic": "CZ",
    "cote d ivoire": "CI",
    "ivory coast": "CI",
    "democratic republic of the congo": "CD",
    "congo democratic republic of the": "CD",
    "republic of the congo": "CG",
    "west bank": "PS",
    "gaza": "PS",
    "palestinian": "PS",
    "the gambia": "GM",
    "the bahamas": "BS",
    "united states": "US",
    "usa": "US",
    "uk": "GB",
    "taiwan": "TW",
    "brunei": "BN",
    "cape verde": "CV",
    "swaziland": "SZ",
}


@cache
def country_code(name: str) -> str | None:
    """ISO 3166-1 alpha-2 code of a country name as the lists write it ("Korea, North", "Iran (Islamic Republic
    of)", "Russian Federation", ...), or None."""
    key = _country_key(without_parentheses(name))
    return _country_table().get(key) if key else None


def _country_key(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", fold(name)).split())


@cache
def _country_table() -> dict[str, str]:
    import pycountry  # noqa: PLC0415 - only needed when lists are loaded

    table: dict[str, str] = {}
    for country in pycountry.countries:
        code = str(country.alpha_2)
        for attribute in ("name", "official_name", "common_name"):
            value = getattr(country, attribute, None)
            if not value:
                continue
            table[_country_key(str(value))] = code
            if "," in str(value):  # "Korea, Democratic People's Republic of" -> "... Republic of Korea"
                head, tail = str(value).split(",", 1)
                table[_country_key(f"{tail} {head}")] = code
        table[code.lower()] = code
    table.update(_COUNTRY_OVERRIDES)
    return table
