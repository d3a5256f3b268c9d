"""Scoring one screened name against one listed name, and the date-of-birth and country modifiers. Pure functions.

Name score (0..1), on normalised tokens (normalize.tokens):
1. Token similarity = mean of rapidfuzz's Jaro-Winkler and OSA (Levenshtein with transpositions) normalised
   similarities. Jaro-Winkler alone is lenient with shared prefixes (ivan/ivanov 0.93); OSA alone is harsh on
   transliteration (alexandr/alexander 0.89); the mean keeps typos (maduro/madruo 0.90) and spelling variants
   (nicolas/nicholas 0.92) above the bar and different names (garcia/garza 0.77) below it. Two long tokens (6+
   letters) that differ only in their vowels score VOWEL_VARIANT_SIMILARITY (hezbolah/hizbalah: a transliteration).
   Tokens with digits must be equal; a single letter matches a token it begins (an initial) at INITIAL_SIMILARITY.
2. Alignment: each query token pairs with at most one listed token, best pairs first (greedy on similarity); a pair
   counts when its similarity is >= TOKEN_MATCH_MIN. Word order therefore does not matter.
3. Split and joined words: if tokens are left over on both sides, their concatenations are compared
   ("abdulrahman" = "abdul" + "rahman", "c m v" = "cmv").
4. Coverage: query coverage = sum over matched query tokens of weight x similarity^2, over the query's total weight;
   name coverage = the same for the listed name. Squaring makes an inexact token count visibly less than an exact
   one (0.90 -> 0.81), so a name with a typo or a different-but-close token lands in "possible", not "confirmed".
   Token weights come from the reference lists (rarer tokens weigh more, particles and legal forms little; see
   index.TokenWeights), so "Trading Company" does not match "AL-AQSA TRADING COMPANY".
   Name score = (query coverage + name coverage) / 2: a missing middle name or an extra one costs about the same.

Modifiers, applied to the best name score of an entry (each one stated in the explanation):
- date of birth: same day +0.05; same year (and month when the list has one) or inside a listed range +0.02;
  within a year (three for "circa" dates) 0; further apart -0.15. No listed date: no change (said so).
- country: a listed nationality or citizenship +0.03, a listed address or birth country +0.03; the entry lists
  nationalities and the country is none of its countries -0.03. No listed country: no change (said so).
The final score is clamped to 0..1 and rounded to 4 decimals. Bench: bench/screening.py, docs/screening.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import OSA, JaroWinkler

from moncore.compliance.screening.lists import WatchlistEntry

TOKEN_MATCH_MIN = 0.80
INITIAL_SIMILARITY = 0.80
VOWEL_VARIANT_SIMILARITY = 0.90
_NOT_CONSONANT = re.compile("[aeiouyhw]")

DOB_SAME_DAY = 0.05
DOB_SAME_YEAR = 0.02
DOB_DIFFERENT = -0.15
DOB_TOLERANCE_YEARS = 1
DOB_TOLERANCE_APPROXIMATE_YEARS = 3
COUNTRY_MATCH = 0.03
COUNTRY_MISMATCH = -0.03

Weight = Callable[[str], float]


def token_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if not (a.isalpha() and b.isalpha()):
        return 0.0
    if len(a) == 1 or len(b) == 1:
        return INITIAL_SIMILARITY if a[0] == b[0] else 0.0
    similarity = (JaroWinkler.normalized_similarity(a, b) + OSA.normalized_similarity(a, b)) / 2
    if similarity < VOWEL_VARIANT_SIMILARITY and min(len(a), len(b)) >= 6:
        skeleton = _skeleton(a)
        if len(skeleton) >= 4 and skeleton == _skeleton(b):
            return VOWEL_VARIANT_SIMILARITY
    return similarity


def _skeleton(token: str) -> str:
    return token[0] + _NOT_CONSONANT.sub("", token[1:])


@dataclass(frozen=True, slots=True)
class Pair:
    query: tuple[str, ...]
    listed: tuple[str, ...]
    similarity: float


@dataclass(frozen=True, slots=True)
class NameScore:
    score: float
    query_coverage: float
    name_coverage: float
    pairs: tuple[Pair, ...]
    query_unmatched: tuple[str, ...]
    name_unmatched: tuple[str, ...]

    def describe(self) -> str:
        if not self.pairs:
            return "no token matched"
        matched = ", ".join(
            f"{' '.join(pair.query)}={' '.join(pair.listed)}"
            + ("" if pair.similarity == 1.0 else f" ({pair.similarity:.2f})")
            for pair in self.pairs
        )
        parts = [f"tokens matched: {matched}"]
        if self.query_unmatched:
            parts.append(f"not on the list: {' '.join(self.query_unmatched)}")
        if self.name_unmatched:
            parts.append(f"not in the query: {' '.join(self.name_unmatched)}")
        parts.append(
            f"query covered {self.query_coverage:.0%}, listed name covered {self.name_coverage:.0%}"
            f" -> name score {self.score:.4f}"
        )
        return "; ".join(parts)


NO_MATCH = NameScore(0.0, 0.0, 0.0, (), (), ())


@dataclass(frozen=True, slots=True)
class WeightedName:
    """A name's normalised tokens with their weights (index.TokenWeights), computed once per listed name."""

    tokens: tuple[str, ...]
    weights: tuple[float, ...]
    total: float

    @classmethod
    def of(cls, tokens: Sequence[str], weight: Weight) -> WeightedName:
        weights = tuple(weight(token) for token in tokens)
        return cls(tuple(tokens), weights, sum(weights))


class MemoSimilarity:
    """token_similarity with a memo: one query meets the same listed tokens (muhammad, ali, bank) in many names."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str], float] = {}

    def __call__(self, a: str, b: str) -> float:
        key = (a, b)
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = token_similarity(a, b)
        return value


def score_names(
    query: WeightedName, listed: WeightedName, similarity: Callable[[str, str], float] = token_similarity
) -> NameScore:
    """How well the screened name `query` matches the listed name `listed` (module docstring)."""
    q_tokens, l_tokens = query.tokens, listed.tokens
    ranked = []
    for q_index, q_token in enumerate(q_tokens):
        for l_index, l_token in enumerate(l_tokens):
            value = similarity(q_token, l_token)
            if value >= TOKEN_MATCH_MIN:
                ranked.append((-value, q_index, l_index))
    q_free, l_free = set(range(len(q_tokens))), set(range(len(l_tokens)))
    pairs: list[tuple[list[int], list[int], float]] = []
    for negative, q_index, l_index in sorted(ranked):
        if q_index in q_free and l_index in l_free:
            pairs.append(([q_index], [l_index], -negative))
            q_free.discard(q_index)
            l_free.discard(l_index)
    if q_free and l_free and len(q_free) + len(l_free) > 2:
        q_rest, l_rest = sorted(q_free), sorted(l_free)
        joined = similarity("".join(q_tokens[i] for i in q_rest), "".join(l_tokens[i] for i in l_rest))
        if joined >= TOKEN_MATCH_MIN:
            pairs.append((q_rest, l_rest, joined))
            q_free.clear()
            l_free.clear()
    if not pairs:
        return NO_MATCH
    q_matched = sum(value**2 * sum(query.weights[i] for i in q_side) for q_side, _, value in pairs)
    l_matched = sum(value**2 * sum(listed.weights[i] for i in l_side) for _, l_side, value in pairs)
    query_coverage = q_matched / query.total if query.total else 0.0
    name_coverage = l_matched / listed.total if listed.total else 0.0
    pairs.sort(key=lambda pair: pair[0][0])
    return NameScore(
        score=(query_coverage + name_coverage) / 2,
        query_coverage=query_coverage,
        name_coverage=name_coverage,
        pairs=tuple(
            Pair(tuple(q_tokens[i] for i in q_side), tuple(l_tokens[i] for i in l_side), value)
            for q_side, l_side, value in pairs
        ),
        query_unmatched=tuple(q_tokens[i] for i in sorted(q_free)),
        name_unmatched=tuple(l_tokens[i] for i in sorted(l_free)),
    )


@dataclass(frozen=True, slots=True)
class Modifier:
    delta: float
    reason: str

    @property
    def contradicts(self) -> bool:
        """A lowering modifier: the date of birth differs from every listed one, or the country is none of the
        entry's while it lists nationalities. Evidence that the screened person is someone else."""
        return self.delta < 0

    def describe(self) -> str:
        return f"{self.reason}: {self.delta:+.2f}" if self.delta else f"{self.reason}: no change"


def date_of_birth_modifier(born: dt.date | None, entry: WatchlistEntry) -> Modifier | None:
    if born is None:
        return None
    if not entry.dates_of_birth:
        return Modifier(0.0, f"date of birth {born.isoformat()} given, none on the list")
    listed = ", ".join(str(date) for date in entry.dates_of_birth)
    for date in entry.dates_of_birth:
        if date.day is not None and (date.year_from, date.month, date.day) == (born.year, born.month, born.day):
            return Modifier(DOB_SAME_DAY, f"date of birth {born.isoformat()} equals the listed {date}")
    for date in entry.dates_of_birth:
        in_years = date.year_from <= born.year <= date.year_to
        if in_years and (date.month is None or date.month == born.month) and date.day is None:
            return Modifier(DOB_SAME_YEAR, f"date of birth {born.isoformat()} is within the listed {date}")
    for date in entry.dates_of_birth:
        tolerance = DOB_TOLERANCE_APPROXIMATE_YEARS if date.approximate else DOB_TOLERANCE_YEARS
        if date.year_from - tolerance <= born.year <= date.year_to + tolerance:
            return Modifier(0.0, f"date of birth {born.isoformat()} is close to the listed {listed}")
    return Modifier(DOB_DIFFERENT, f"date of birth {born.isoformat()} differs from the listed {listed}")


def country_modifier(country: str | None, entry: WatchlistEntry) -> Modifier | None:
    if country is None:
        return None
    if country in entry.nationalities:
        return Modifier(COUNTRY_MATCH, f"country {country} is a listed nationality")
    if country in entry.countries:
        return Modifier(COUNTRY_MATCH, f"country {country} is a listed address or birth country")
    if entry.nationalities:
        listed = ", ".join(entry.nationalities)
        return Modifier(COUNTRY_MISMATCH, f"country {country} is not a listed nationality ({listed})")
    return Modifier(0.0, f"country {country} given, no nationality on the list")


def combine(name_score: float, modifiers: Sequence[Modifier]) -> float:
    return round(min(1.0, max(0.0, name_score + sum(modifier.delta for modifier in modifiers))), 4)
