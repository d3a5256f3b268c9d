"""What the kernel does with screening matches: pure rules, no I/O (the gate, gate.py, reads and writes).

A user's `screening_status` (UserItem; an item without one counts as `clear`):
- `clear`: no unreviewed match; money moves.
- `pending_review`: a possible match is in a case; the user exists but moves no money until an officer decides.
- `confirmed`: a confirmed match (or an officer's decision that a match is true); no money moves, ever, through
  screening's gate (the officer's `frozen` outcome or the re-screening job also freeze the user).

A match (engine.Match, score >= POSSIBLE_THRESHOLD) is **confirmed** when both hold:
1. its name score alone, before any modifier, is at least BLOCK_NAME_SCORE (0.95): the screened name equals one of
   the entry's names (primary name or alias) after normalisation (case, accents, transliteration, punctuation, token
   order all fold away, docs/screening.md), up to a particle or a very small spelling difference; a typo in a rare
   token, or a missing or extra name, stays below;
2. nothing contradicts it: when both sides give a date of birth, it is within the listed one's tolerance (a year,
   three for "circa" dates), and when the entry lists nationalities, the screened country is one of the entry's
   countries (scoring.Modifier.contradicts). A missing date or country on either side contradicts nothing.
Every other match is **possible**. This is stricter than the engine's `decision` band (score >= 0.93 including
modifiers): a date of birth that matches cannot lift a 0.90 name into a block, and a blocking decision never rests on
a name that differs. Erring this way is cheap: a possible match still stops the user's money (pending_review) until
an officer looks.

False positives: an officer's `no_action` decision on a screening case remembers each of its (list, entry id) pairs
for that user; such a match is dropped at every later screening of the same user (a new entry still hits).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from moncore.compliance.screening.engine import Match

BLOCK_NAME_SCORE = 0.95
REASON_HITS = 10


class ScreeningStatus(StrEnum):
    CLEAR = "clear"
    PENDING_REVIEW = "pending_review"
    CONFIRMED = "confirmed"


def status_of(stored: str | None) -> ScreeningStatus:
    """A stored screening_status; users created before screening was wired have none and count as clear."""
    return ScreeningStatus(stored) if stored else ScreeningStatus.CLEAR


def lists_version(lists_digest: str, watchlist_version: int) -> str:
    """What a user was screened against: the public list files (their SHA-256) and the tenant watchlist's version
    (bumped by every change to it). When it differs from the user's stored one, the user is screened again."""
    return f"{lists_digest[:16] or 'none'}.w{watchlist_version}"


@dataclass(frozen=True, slots=True)
class Hit:
    """One match the kernel acts on."""

    list: str
    entry_id: str
    name: str
    matched_name: str
    score: float
    name_score: float
    confirmed: bool
    why: str  # why confirmed or only possible, in one line

    @property
    def key(self) -> tuple[str, str]:
        return (self.list, self.entry_id)

    def record(self) -> dict[str, Any]:
        """For audit payloads and cases (scores as strings: audit payloads are hashed canonically, no floats)."""
        return {
            "list": self.list,
            "entry_id": self.entry_id,
            "name": self.name,
            "matched_name": self.matched_name,
            "score": f"{self.score:.4f}",
            "name_score": f"{self.name_score:.4f}",
            "decision": "confirmed" if self.confirmed else "possible",
        }


def hit_of(match: Match) -> Hit:
    contradictions = [modifier.reason for modifier in match.modifiers if modifier.contradicts]
    if contradictions:
        confirmed, why = False, "possible: " + "; ".join(contradictions)
    elif match.name_score >= BLOCK_NAME_SCORE:
        confirmed, why = True, f"confirmed: name score {match.name_score:.4f} >= {BLOCK_NAME_SCORE}, no contradiction"
    else:
        confirmed, why = False, f"possible: name score {match.name_score:.4f} < {BLOCK_NAME_SCORE}"
    return Hit(
        list=match.list,
        entry_id=match.entry_id,
        name=match.name,
        matched_name=match.matched_name,
        score=match.score,
        name_score=match.name_score,
        confirmed=confirmed,
        why=why,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one screening: the status it calls for, the hits acted on, the matches suppressed as
    remembered false positives, and the lists version it was made against."""

    status: ScreeningStatus
    hits: tuple[Hit, ...]
    suppressed: tuple[tuple[str, str], ...]
    lists_version: str

    @property
    def confirmed(self) -> tuple[Hit, ...]:
        return tuple(hit for hit in self.hits if hit.confirmed)

    def record(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "lists_version": self.lists_version,
            "hits": [hit.record() for hit in self.hits],
            "suppressed_false_positives": [f"{list_name}:{entry_id}" for list_name, entry_id in self.suppressed],
        }


def classify(
    matches: Iterable[Match], *, lists_version: str, false_positives: Collection[tuple[str, str]] = ()
) -> Verdict:
    """The verdict on a screened person's matches, dropping the remembered false positives (list, entry id)."""
    hits: list[Hit] = []
    suppressed: list[tuple[str, str]] = []
    for match in matches:
        if match.decision is None:
            continue  # below the possible threshold (only when the caller asked the engine for lower scores)
        if (match.list, match.entry_id) in false_positives:
            suppressed.append((match.list, match.entry_id))
            continue
        hits.append(hit_of(match))
    if any(hit.confirmed for hit in hits):
        status = ScreeningStatus.CONFIRMED
    elif hits:
        status = ScreeningStatus.PENDING_REVIEW
    else:
        status = ScreeningStatus.CLEAR
    return Verdict(status, tuple(hits), tuple(suppressed), lists_version)


def case_reason(subject: str, verdict: Verdict, *, context: str) -> str:
    """A case's reason: who, when (creation, re-screening), and the hits with their list, entry id and score (the
    first REASON_HITS; the case's screening_hits and the audit event keep all of them)."""
    listed = "; ".join(
        f"{hit.list} entry {hit.entry_id} ({hit.name}) via {hit.matched_name!r} score {hit.score:.4f} [{hit.why}]"
        for hit in verdict.hits[:REASON_HITS]
    )
    if len(verdict.hits) > REASON_HITS:
        listed += f"; and {len(verdict.hits) - REASON_HITS} more"
    kind = "confirmed" if verdict.status is ScreeningStatus.CONFIRMED else "possible"
    return f"{kind} sanctions screening match for {subject} at {context} (lists {verdict.lists_version}): {listed}"


def hit_keys(hits: Iterable[Hit]) -> list[str]:
    return sorted(f"{hit.list}:{hit.entry_id}" for hit in hits)
