"""The in-memory screening index: every listed name normalised once, an inverted index for candidate retrieval, and
the token weights of the reference lists.

Candidate retrieval (blocking): each informative token of a listed name is posted under a few keys (token_keys: the
token itself, its phonetic key (normalize.phonetic_key), and for long tokens its first and last four letters); a
query looks up the same keys of its own tokens and only names that share at least one key are scored. A typo or a
transliteration variant usually keeps one of the keys (hizballah and hezbollah share the phonetic key, maduro and
madruo too); a name all of whose tokens change all their keys is missed (measured in bench/screening.py). A name
reached only through keys shared by very many names (muhammad, ali, trading) is scored when two of the query's
tokens reach it, so common tokens alone do not make every other name a candidate.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from moncore.compliance.screening.lists import WatchlistEntry
from moncore.compliance.screening.normalize import is_low_information, phonetic_key, tokens
from moncore.compliance.screening.scoring import WeightedName

LOW_INFORMATION_WEIGHT = 0.2
MIN_WEIGHT = 0.2
# A token in at most 1/FULL_WEIGHT_RATIO of the reference names weighs 1; more frequent tokens weigh less (IDF).
FULL_WEIGHT_RATIO = 500
COMMON_KEY_POSTINGS = 1500  # a key posted for more names than this is "common" (see the module docstring)


@dataclass(frozen=True, slots=True)
class IndexedName:
    entry: int  # position in ScreeningIndex.entries
    name: int  # position in the entry's names
    weighted: WeightedName

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.weighted.tokens


class TokenWeights:
    """Inverse document frequency of tokens over the reference lists' names, scaled to MIN_WEIGHT..1.

    Particles, legal forms and initials (normalize.LOW_INFORMATION) weigh LOW_INFORMATION_WEIGHT; a token that the
    reference lists never use weighs 1. The same weights serve every list screened (tenant lists included), so a
    pair of names scores the same whichever list it comes from."""

    def __init__(self, document_frequency: dict[str, int], documents: int) -> None:
        self.document_frequency = document_frequency
        self.documents = max(documents, 1)
        self._full = math.log(FULL_WEIGHT_RATIO)
        self._memo: dict[str, float] = {}

    @classmethod
    def of(cls, names: Iterable[Sequence[str]]) -> TokenWeights:
        frequency: Counter[str] = Counter()
        documents = 0
        for name in names:
            documents += 1
            frequency.update(set(name))
        return cls(dict(frequency), documents)

    @classmethod
    def uniform(cls) -> TokenWeights:
        return cls({}, 1)

    def __call__(self, token: str) -> float:
        weight = self._memo.get(token)
        if weight is None:
            weight = self._weight(token)
            if token in self.document_frequency:  # the memo stays the size of the lists' vocabulary
                self._memo[token] = weight
        return weight

    def _weight(self, token: str) -> float:
        if is_low_information(token):
            return LOW_INFORMATION_WEIGHT
        frequency = self.document_frequency.get(token, 0)
        if frequency <= 1:
            return 1.0
        return min(1.0, max(MIN_WEIGHT, math.log(self.documents / frequency) / self._full))


def informative(name_tokens: Sequence[str]) -> list[str]:
    """The tokens used for retrieval: all but particles, legal forms and initials (unless nothing else is left)."""
    return [token for token in name_tokens if not is_low_information(token)] or list(name_tokens)


@cache
def token_keys(token: str) -> list[str]:
    """The token, its phonetic key (4+ letters), and its first and last four letters (7+ letters: a typo in a
    long word keeps at least one of them)."""
    keys = [f"t:{token}"]
    if len(token) >= 4:
        keys.append(f"p:{phonetic_key(token)}")
    if len(token) >= 7:
        keys += [f"b:{token[:4]}", f"e:{token[-4:]}"]
    return keys


class ScreeningIndex:
    def __init__(self, entries: Sequence[WatchlistEntry], weights: TokenWeights | None = None) -> None:
        self.entries = tuple(entries)
        normalised: list[tuple[int, int, tuple[str, ...]]] = []
        for entry_index, entry in enumerate(self.entries):
            for name_index, listed in enumerate(entry.names):
                name_tokens = tokens(listed.text)
                if name_tokens:
                    normalised.append((entry_index, name_index, name_tokens))
        self.weights = weights if weights is not None else TokenWeights.of(item[2] for item in normalised)
        self.names: list[IndexedName] = []
        postings: dict[str, list[int]] = defaultdict(list)
        for position, (entry_index, name_index, name_tokens) in enumerate(normalised):
            self.names.append(IndexedName(entry_index, name_index, WeightedName.of(name_tokens, self.weights)))
            for key in {key for token in informative(name_tokens) for key in token_keys(token)}:
                postings[key].append(position)
        self.postings = dict(postings)

    def candidates(self, query_tokens: Sequence[str]) -> list[IndexedName]:
        """Names sharing a rare key with the query, or keys of two query tokens (module docstring)."""
        tokens_used = informative(query_tokens)
        hits: set[int] = set()
        shared: Counter[int] = Counter()
        for token in tokens_used:
            reached: set[int] = set()
            for key in token_keys(token):
                positions = self.postings.get(key, ())
                if len(positions) <= COMMON_KEY_POSTINGS:
                    hits.update(positions)
                reached.update(positions)
            shared.update(reached)
        needed = min(2, len(tokens_used))
        hits.update(position for position, count in shared.items() if count >= needed)
        return [self.names[position] for position in sorted(hits)]
