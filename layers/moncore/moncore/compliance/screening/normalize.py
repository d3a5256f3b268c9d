"""Name normalisation for screening: the same function runs on list names and on screened names, so both sides meet
in one spelling.

Steps (docs/screening.md):
1. Unicode NFKC, then transliteration to ASCII with `anyascii` (accents and diacritics go: "José Müller" -> "Jose
   Muller"; Cyrillic, Arabic, Greek ... scripts are romanised), then casefold.
2. Apostrophes vanish inside words ("GAMA'AT" -> "gamaat", "O'Neil" -> "oneil"), dotted acronyms lose their dots
   ("S.A." -> "sa", "C.M.V." -> "cmv"); every other non-alphanumeric character (hyphen, comma, dot, slash,
   parentheses) separates tokens. Initials stay single letters (low-information tokens).
3. Honorifics and titles (mr, dr, shaykh, general, ...) are dropped when something else remains.
4. A few well-known transliteration families are folded to one spelling (mohammed/muhammad/mohamed -> muhammad;
   abdul/abdel/"abd al" -> abdul; ...), then every token gets the same spelling folds: doubled letters once
   (hassan -> hasan), ph -> f, dh -> d, th -> t, kh -> h, gh -> g, ck -> k, q -> k, ks -> x, ou -> u, oo -> u,
   ee -> i, y -> i ("Qadhafi" -> "kadafi", "Aleksandr" -> "alexandr", "Khan" -> "han"). Both sides get the same
   folds, so an exact name stays exact; the fuzzy token comparison covers what is left.
5. "LAST, First" (OFAC's order for individuals) is turned into "First LAST"; token order does not change the score
   (tokens are aligned as a set), but it keeps explanations readable and the joined-word comparison meaningful.

Why not a phonetic algorithm for scoring: Soundex-style keys conflate names that differ only in vowels (Hassan and
Hussein), which would lift innocent near-misses to a "confirmed" hit. A phonetic key is used only for candidate
retrieval (`phonetic_key`), where a collision costs a little time and nothing else.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from anyascii import anyascii

# Dropped wherever they stand (when at least one other token remains).
HONORIFICS = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lord", "lady", "madam",
        "sheikh", "shaykh", "shaikh", "sheik", "shaykhah", "haji", "hajji", "hajj", "alhaj", "alhajj", "mullah",
        "mulla", "maulvi", "mawlawi", "maulana", "mawlana", "qari", "mufti", "imam", "sayyid", "sayed",
        "gen", "general", "col", "colonel", "lt", "ltcol", "maj", "major", "capt", "captain", "brig", "brigadier",
        "cmdr", "commander", "adm", "admiral", "sgt", "rtd", "ret", "excellency", "hon",
    }
)  # fmt: skip

# Kept, but carry little identifying information: particles of personal names and legal forms of organisations.
# Tokens are compared with this set after the spelling folds (is_low_information).
LOW_INFORMATION = frozenset(
    {
        "al", "el", "ul", "bin", "ibn", "bint", "ben", "abu", "um", "umm", "de", "del", "della", "der", "di", "da",
        "do", "dos", "das", "du", "la", "le", "les", "los", "las", "van", "von", "y", "e", "and", "of", "the", "for",
        "co", "company", "corp", "corporation", "inc", "incorporated", "ltd", "limited", "llc", "llp", "lp", "plc",
        "sa", "sas", "sarl", "sl", "srl", "spa", "ag", "gmbh", "kg", "bv", "nv", "ab", "as", "oy", "jsc", "ojsc",
        "cjsc", "pjsc", "ooo", "zao", "oao", "pao", "fze", "fzco", "fzc", "fzllc", "cia", "ltda", "sac", "sde", "cv",
        "pte", "pvt", "bhd", "sdn", "tic", "sti",
    }
)  # fmt: skip

# Transliteration families folded to one spelling before comparison (token -> canonical token).
_FAMILIES: dict[str, tuple[str, ...]] = {
    "muhammad": (
        "mohammed", "mohammad", "mohamed", "mohamad", "muhammed", "muhamed", "muhamad", "mohammod", "mehmed",
        "mohd", "muhd", "mohamud", "mahomed", "mouhamed", "mouhammad", "mukhammad", "mokhammad",
    ),
    "abdul": ("abdel", "abdal", "abdol", "abdoul", "abdoula", "abdull"),
    "usama": ("osama", "ousama", "oussama"),
    "husayn": ("hussein", "husain", "hussain", "husein", "hossein", "houssein", "husseyn", "hussayn"),
    "yusuf": ("yousef", "youssef", "yousif", "yusef", "youssouf", "yousuf", "yosef"),
    "abdullah": ("abdallah", "abdulla", "abdalla", "abdoullah"),
    "qaida": ("qaeda", "qaidah", "kaida"),
}  # fmt: skip
CANONICAL: dict[str, str] = {variant: canonical for canonical, variants in _FAMILIES.items() for variant in variants}

# The particle after "abd" in "abd al", "abd el", "abd ul" (the spaced spellings of abdul).
_ABD_PARTICLES = frozenset({"al", "el", "ul", "ol", "il"})

_APOSTROPHES = re.compile(r"['`\u2018\u2019\u02bc\u02bb\u00b4]")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_PARENTHESES = re.compile(r"\(([^()]*)\)")
_ACRONYM = re.compile(r"\b[a-z](?:\.[a-z])+\b\.?")  # "s.a.", "c.v", "u.s.a." (not "j. smith")
_DOUBLED = re.compile(r"([a-z])\1+")
_DIGRAPHS = (
    ("ph", "f"), ("dh", "d"), ("th", "t"), ("kh", "h"), ("gh", "g"), ("ck", "k"), ("q", "k"), ("ks", "x"),
    ("ou", "u"), ("oo", "u"), ("ee", "i"), ("y", "i"),
)  # fmt: skip
_VOWELS = frozenset("aeiouy")
# Soundex consonant classes; vowels, h, w and y carry no code.
_CODES = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"), "l": "4"}
_CODES |= {**dict.fromkeys("mn", "5"), "r": "6"}


def fold(text: str) -> str:
    """NFKC, transliterate to ASCII, drop apostrophes, casefold: the spelling every comparison starts from."""
    ascii_text = anyascii(unicodedata.normalize("NFKC", text))
    return _APOSTROPHES.sub("", ascii_text).casefold()


def tokens(name: str) -> tuple[str, ...]:
    """Normalised tokens of a name, in reading order (see the module docstring)."""
    text = _ACRONYM.sub(lambda found: found.group(0).replace(".", ""), fold(_comma_order(name)))
    words = [word for word in _SEPARATORS.split(text) if word]
    kept = [word for word in words if word not in HONORIFICS] or words
    return tuple(_fold_families(kept))


def _fold_families(words: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for position, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word == "abd":  # "abd al karim", "abd-al-karim": the spaced spelling of abdul
            out.append("abdul")
            skip = position + 1 < len(words) and words[position + 1] in _ABD_PARTICLES
            continue
        out.append(CANONICAL.get(word, word))
    return [spelling(word) for word in out]


@lru_cache(maxsize=1 << 16)
def spelling(token: str) -> str:
    """The spelling folds of step 4 (module docstring); tokens with digits are left alone. Memoised: the lists use
    about 20,000 distinct words."""
    if not token.isalpha():
        return token
    token = _DOUBLED.sub(r"\1", token)
    for old, new in _DIGRAPHS:
        token = token.replace(old, new)
    return _DOUBLED.sub(r"\1", token)


def _comma_order(name: str) -> str:
    """ "MADURO MOROS, Nicolas" -> "Nicolas MADURO MOROS". Only for one comma whose tail is not a legal form
    ("ACME TRADING, LTD." stays as it is)."""
    if name.count(",") != 1:
        return name
    head, tail = (part.strip() for part in name.split(","))
    tail_words = [word for word in _SEPARATORS.split(fold(tail)) if word]
    if not head or not tail_words or all(word in LOW_INFORMATION or len(word) == 1 for word in tail_words):
        return name
    return f"{tail} {head}"


def without_parentheses(name: str) -> str:
    """The name with any "(...)" part removed: "ISLAMIC REVOLUTIONARY GUARD CORPS (IRGC)" -> "... CORPS"."""
    return " ".join(_PARENTHESES.sub(" ", name).split())


def parenthesised(name: str) -> list[str]:
    """The "(...)" parts of a name, e.g. an organisation's acronym or its name in another language."""
    return [part.strip() for part in _PARENTHESES.findall(name) if part.strip()]


def phonetic_key(token: str) -> str:
    """A coarse sound key for candidate retrieval only: the first letter (any vowel is "a"), then the Soundex
    consonant classes of the rest with repeats collapsed ("hizballah" and "hezbollah" are both "h214"). Never used
    to score: see the module docstring."""
    if not token:
        return ""
    head = "a" if token[0] in _VOWELS else token[0]
    codes: list[str] = []
    previous = _CODES.get(token[0], "")
    for char in token[1:]:
        code = _CODES.get(char, "")
        if code and code != previous:
            codes.append(code)
        if char not in "hw":
            previous = code
    return head + "".join(codes)


_LOW_INFORMATION_FOLDED = frozenset(spelling(word) for word in LOW_INFORMATION)


def is_low_information(token: str) -> bool:
    """For normalised tokens (spelling folds applied): particles, legal forms and single letters."""
    return token in _LOW_INFORMATION_FOLDED or (len(token) == 1 and token.isalpha())
