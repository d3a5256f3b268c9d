"""The screening engine: screen one name (with optional country and date of birth) against the public lists and any
extra watchlists, and score one pair of names (the CLI's `moncore screening score`).

Thresholds (docs/screening.md; measured by bench/screening.py):
- score >= CONFIRMED_THRESHOLD: "confirmed", strong enough to block;
- score >= POSSIBLE_THRESHOLD: "possible", to be reviewed in a case;
- below: not a match, not returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from moncore.compliance.screening.index import IndexedName, ScreeningIndex, TokenWeights
from moncore.compliance.screening.lists import Watchlist, WatchlistEntry, list_files, load_lists, sanctions_dir
from moncore.compliance.screening.normalize import tokens
from moncore.compliance.screening.scoring import (
    MemoSimilarity,
    Modifier,
    NameScore,
    WeightedName,
    combine,
    country_modifier,
    date_of_birth_modifier,
    score_names,
)

CONFIRMED_THRESHOLD = 0.93
POSSIBLE_THRESHOLD = 0.80
MAX_MATCHES = 50

log = logging.getLogger(__name__)

LIST_TITLES = {"ofac_sdn": "OFAC SDN", "un_consolidated": "UN consolidated list"}


def decision(score: float) -> str | None:
    if score >= CONFIRMED_THRESHOLD:
        return "confirmed"
    if score >= POSSIBLE_THRESHOLD:
        return "possible"
    return None


@dataclass(frozen=True, slots=True)
class Match:
    list: str
    entry_id: str
    name: str  # the entry's primary name
    matched_name: str  # the listed name or alias that matched best
    score: float  # 0..1, 4 decimals
    decision: str | None  # "confirmed" | "possible" | None (below the possible threshold: only when min_score asks)
    explanation: str
    name_score: float  # the best name score alone, before the modifiers
    modifiers: tuple[Modifier, ...] = ()  # date of birth and country, as applied (negative: a contradiction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "list": self.list,
            "entry_id": self.entry_id,
            "name": self.name,
            "matched_name": self.matched_name,
            "score": self.score,
            "decision": self.decision,
            "explanation": self.explanation,
        }


@dataclass(frozen=True, slots=True)
class PairScore:
    score: float
    decision: str | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "decision": self.decision, "explanation": self.explanation}


class ScreeningEngine:
    def __init__(self, index: ScreeningIndex, lists_digest: str = "") -> None:
        self.index = index
        # SHA-256 of the list files the index was built from: part of the lists version users are screened against
        # (compliance/screening/gate.py), so a changed file makes the re-screening job screen everyone again.
        self.lists_digest = lists_digest
        self._extra: dict[Watchlist, ScreeningIndex] = {}

    @property
    def weights(self) -> TokenWeights:
        return self.index.weights

    def screen(
        self,
        name: str,
        *,
        country: str | None = None,
        date_of_birth: str | None = None,
        watchlists: Sequence[Watchlist] = (),
        min_score: float = POSSIBLE_THRESHOLD,
        limit: int = MAX_MATCHES,
    ) -> list[Match]:
        """Matches of `name` at or above `min_score`, best first (score, then list and entry id), one per entry.
        Extra watchlists (a tenant's own) are indexed on the fly with the reference lists' token weights."""
        query = WeightedName.of(tokens(name), self.weights)
        similarity = MemoSimilarity()
        born = dt.date.fromisoformat(date_of_birth) if date_of_birth else None
        indexes = [self.index, *(self._index_of(watchlist) for watchlist in watchlists)]
        matches: list[Match] = []
        for index in indexes:
            matches += self._screen_index(index, name, query, similarity, country, born, min_score)
        matches.sort(key=lambda match: (-match.score, match.list, match.entry_id))
        return matches[:limit]

    def _index_of(self, watchlist: Watchlist) -> ScreeningIndex:
        """A tenant watchlist's index, kept while the same watchlist (same entries) is screened again: the
        re-screening job screens every user of a tenant against one watchlist."""
        index = self._extra.get(watchlist)
        if index is None:
            if len(self._extra) >= 64:
                self._extra.clear()
            index = self._extra[watchlist] = ScreeningIndex(watchlist.entries, self.weights)
        return index

    def _screen_index(
        self,
        index: ScreeningIndex,
        name: str,
        query: WeightedName,
        similarity: MemoSimilarity,
        country: str | None,
        born: dt.date | None,
        min_score: float,
    ) -> list[Match]:
        best: dict[int, tuple[NameScore, IndexedName]] = {}
        for candidate in index.candidates(query.tokens):
            scored = score_names(query, candidate.weighted, similarity)
            held = best.get(candidate.entry)
            if held is None or scored.score > held[0].score:
                best[candidate.entry] = (scored, candidate)
        # Modifiers move a score by at most DOB_SAME_DAY + COUNTRY_MATCH, so lower name scores cannot reach min_score.
        floor = min_score - 0.08
        matches = []
        for entry_index, (scored, candidate) in best.items():
            if scored.score < floor:
                continue
            entry = index.entries[entry_index]
            modifiers = [
                modifier
                for modifier in (date_of_birth_modifier(born, entry), country_modifier(country, entry))
                if modifier is not None
            ]
            score = combine(scored.score, modifiers)
            if score < min_score or score <= 0.0:
                continue
            verdict = decision(score)
            listed = entry.names[candidate.name]
            explanation = _explain(name, entry, listed.text, listed.kind, scored, modifiers, score, verdict)
            matches.append(
                Match(
                    list=entry.list_name,
                    entry_id=entry.entry_id,
                    name=entry.name,
                    matched_name=listed.text,
                    score=score,
                    decision=verdict,
                    explanation=explanation,
                    name_score=round(scored.score, 4),
                    modifiers=tuple(modifiers),
                )
            )
        return matches

    def score_pair(self, name: str, other: str) -> PairScore:
        """The name score of `name` (as screened) against `other` (as listed), with this engine's token weights."""
        scored = score_names(WeightedName.of(tokens(name), self.weights), WeightedName.of(tokens(other), self.weights))
        score = combine(scored.score, ())
        verdict = decision(score)
        explanation = f"{name!r} vs {other!r}: {scored.describe()}; score {score:.4f}" + _verdict_text(verdict)
        return PairScore(score=score, decision=verdict, explanation=explanation)


def _verdict_text(verdict: str | None) -> str:
    if verdict == "confirmed":
        return f" (confirmed: >= {CONFIRMED_THRESHOLD})"
    if verdict == "possible":
        return f" (possible: >= {POSSIBLE_THRESHOLD})"
    return f" (no match: < {POSSIBLE_THRESHOLD})"


def _explain(
    query: str,
    entry: WatchlistEntry,
    matched: str,
    kind: str,
    scored: NameScore,
    modifiers: Sequence[Any],
    score: float,
    verdict: str | None,
) -> str:
    title = LIST_TITLES.get(entry.list_name, entry.list_name)
    parts = [f"{query!r} vs {kind} {matched!r} of {title} entry {entry.entry_id} ({entry.party})", scored.describe()]
    parts += [modifier.describe() for modifier in modifiers]
    return "; ".join(parts) + f"; score {score:.4f}" + _verdict_text(verdict)


@cache
def default_engine() -> ScreeningEngine:
    """The engine over the shipped OFAC and UN lists, built once per process (Lambda container) on first use."""
    started = time.perf_counter()
    directory = sanctions_dir()
    digest = hashlib.sha256()
    for path in list_files(directory):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    engine = ScreeningEngine(ScreeningIndex(load_lists(directory)), lists_digest=digest.hexdigest())
    log.info(
        "screening index built from %s: %d entries, %d names in %.0f ms",
        directory,
        len(engine.index.entries),
        len(engine.index.names),
        (time.perf_counter() - started) * 1000,
    )
    return engine
