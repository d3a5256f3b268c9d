"""Screening bench: precision and recall of the name-screening engine on labelled names generated deterministically
from the shipped OFAC SDN and UN lists, plus the hand-labelled pairs in bench/data/screening_pairs.csv
(docs/screening.md).

Two measurements, both at the engine's two thresholds (possible, confirmed):

1. Search (what `POST /v1/screening/checks` does): a query is screened against all lists.
   - Positive queries are spellings of a sampled entry's names: an alias (ofac_alt.csv, UN aliases), the primary name
     with its tokens reordered, with accents added, in lower case with other punctuation, with one typo, with
     transliteration variants, and with a middle name dropped ("partial"). Recall = share of positive queries whose
     entry is returned at or above the threshold.
   - Negative queries: "near miss" (a sampled name of two or three words with its rarest word replaced by another
     entry's word: someone else sharing part of the name) and "innocent" (common first and last names of many
     origins, minus any that are literally listed).
   - Precision = correct hits / all hits at or above the threshold, over every query. A hit is correct when it is
     the query's entry or an entry that lists one of the same names token for token (the same person on the other
     list, or a namesake: a true name match that a case must resolve), or when the listed name that matched equals
     the query token for token. A lower bound: differently spelt duplicates count as false.
2. Pairs (what `moncore screening score NAME1 NAME2` prints): labelled (query, listed name) pairs. Positives: every
   positive query above against the name it was made from, each alias against its entry's primary name (the data
   README's suggestion: hard, since an alias may share no token with the name), and the hand-labelled positives.
   Negatives: every near miss against its source name, every innocent name against the listed name that scores
   highest for it, random pairs of names of different entries, and the hand-labelled negatives.

Everything is seeded; the same lists and code give the same numbers.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report

NAME = "screening"
SEED = 20261122
DEFAULT_ENTRIES = 400
DEFAULT_INNOCENTS = 600
RANDOM_PAIRS = 600
SWEEP = tuple(round(0.70 + step / 100, 2) for step in range(28))  # thresholds 0.70 .. 0.97 for the sweep table
PAIRS_FILE = Path(__file__).resolve().parent / "data" / "screening_pairs.csv"

log = logging.getLogger("bench.screening")


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words(
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Paul Ashley Steven "
    "Emily Andrew Donna Joshua Michelle Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Jose Maria "
    "Juan Carmen Luis Ana Carlos Lucia Javier Isabel Miguel Pilar Antonio Elena Francisco Rosa Pierre Marie "
    "Jean Sophie Louis Camille Francois Chloe Hans Anna Klaus Petra Jurgen Ursula Giuseppe Giulia Marco Chiara "
    "Piotr Katarzyna Jan Agnieszka Wei Li Fang Jing Hiroshi Yuki Kenji Sakura Raj Priya Amit Anjali Sanjay "
    "Chinedu Ngozi Emeka Amara Kwame Abena Olumide Funmilayo Mehmet Ayse Mustafa Elif Omar Layla Karim Nadia "
    "Samir Yasmin Tariq Leila Dmitri Olga Sergei Natalia Mikhail Svetlana Lars Ingrid Sven Astrid Zoe Noemie "
    "Bjorn Soren Chiara Aurelie Joao Goncalo Ines Thiago Camila Mateo Valentina"
)
LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Martin Jackson Thompson "
    "White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell "
    "Garcia Rodriguez Martinez Hernandez Lopez Gonzalez Perez Sanchez Ramirez Torres Flores Rivera Gomez Diaz "
    "Dubois Durand Lefebvre Moreau Laurent Simon Michel Leroy Roux Fournier Muller Schmidt Schneider Fischer Weber "
    "Meyer Wagner Becker Hoffmann Rossi Russo Ferrari Esposito Bianchi Romano Colombo Nowak Kowalski Wisniewski "
    "Wojcik Wang Zhang Liu Chen Yang Huang Zhao Sato Suzuki Takahashi Tanaka Watanabe Patel Sharma Singh Gupta "
    "Kumar Iyer Okafor Adeyemi Okonkwo Mensah Boateng Nwosu Yilmaz Kaya Demir Sahin Haddad Nasser Mansour "
    "Khoury Saleh Farah Ivanova Petrov Smirnov Volkov Kuznetsov Larsen Hansen Nielsen Johansson Andersson "
    "Lindqvist Silva Santos Oliveira Costa Pereira Ferreira Almeida Tremblay Gagnon Bouchard Kelly Murphy "
    "O'Brien Byrne Walsh"
)
ACCENTS = {"a": "áàâä", "e": "éèêë", "i": "íîï", "o": "óôöø", "u": "úùûü", "n": "ñ", "c": "ç", "s": "š", "z": "ž"}
TRANSLITERATIONS = (
    ("muhammad", "mohammed"),
    ("mohammed", "muhammad"),
    ("abd al", "abdul"),
    ("abdul", "abdel"),
    ("yusuf", "youssef"),
    ("husayn", "hussein"),
    ("hussein", "husain"),
    ("ou", "u"),
    ("u", "ou"),
    ("ks", "x"),
    ("x", "ks"),
    ("kh", "h"),
    ("q", "k"),
    ("ph", "f"),
    ("ee", "i"),
    ("y", "i"),
    ("ss", "s"),
    ("dh", "d"),
)


@dataclass(frozen=True)
class Query:
    text: str
    category: str
    positive: bool
    list_name: str = ""  # the entry the query was made from (for negatives: the one it must not match)
    entry_id: str = ""
    source: str = ""  # the listed name the query was made from


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench screening", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="entries sampled from the lists")
    parser.add_argument("--innocents", type=int, default=DEFAULT_INNOCENTS, help="innocent names generated")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the JSON and the doc alone")
    parser.add_argument("--show-misses", type=int, default=0, help="log this many misses and false hits")
    args = parser.parse_args(argv)
    data = run(args.entries, args.innocents, args.seed, args.show_misses)
    log.info("search: %s", data["search"]["overall"])
    log.info("pairs: %s", data["pairs"]["overall"])
    if not args.no_write:
        data = {"bench": NAME, "date": report.now_utc(), "machine": report.machine(), **data}
        log.info("wrote %s", report.write_json(NAME, data))
        log.info("updated %s", report.update_section(NAME, markdown(data)))
    return 0


def run(entries_sampled: int, innocents: int, seed: int, show_misses: int = 0) -> dict[str, Any]:
    from moncore.compliance.screening import engine as engine_module  # noqa: PLC0415 - timed below
    from moncore.compliance.screening.normalize import tokens  # noqa: PLC0415

    started = time.perf_counter()
    engine = engine_module.default_engine()
    build_s = time.perf_counter() - started
    rng = random.Random(seed)
    entries = list(engine.index.entries)
    sample = rng.sample(entries, min(entries_sampled, len(entries)))
    listed_token_sets = {tuple(sorted(name.tokens)) for name in engine.index.names}
    donors = [token for entry in rng.sample(entries, 2000) for token in tokens(entry.name) if len(token) >= 5]
    queries = [query for entry in sample for query in positives(entry, rng)]
    queries += [query for entry in sample for query in near_misses(entry, rng, donors, engine.weights)]
    queries += innocent_queries(rng, innocents, listed_token_sets, tokens)
    thresholds = {"possible": engine_module.POSSIBLE_THRESHOLD, "confirmed": engine_module.CONFIRMED_THRESHOLD}

    # ---- search
    latencies_ms: list[float] = []
    results: list[tuple[Query, list[Any]]] = []
    for query in queries:
        began = time.perf_counter()
        matches = engine.screen(query.text, min_score=SWEEP[0])
        latencies_ms.append((time.perf_counter() - began) * 1000)
        results.append((query, matches))
    clusters = same_entity_clusters(entries, tokens)
    search = search_metrics(results, thresholds, tokens, clusters, show_misses)
    sweep_levels = {f"{level:.2f}": level for level in SWEEP}
    search_sweep = search_metrics(results, sweep_levels, tokens, clusters, 0)["overall"]

    # ---- pairs
    pairs: list[tuple[str, str, bool, str]] = []
    for query in queries:
        if query.category == "innocent":
            nearest = engine.screen(query.text, min_score=0.0, limit=1)
            if nearest:
                pairs.append((query.text, nearest[0].matched_name, False, "innocent"))
        elif query.category != "alias":
            pairs.append((query.text, query.source, query.positive, query.category))
    for entry in sample:
        for alias in entry.names[1:]:
            if alias.kind not in {"name without parentheses", "name in parentheses", "original script"}:
                pairs.append((alias.text, entry.name, True, "alias vs primary name"))
    for _ in range(RANDOM_PAIRS):
        first, second = rng.sample(entries, 2)
        pairs.append((first.name, second.name, False, "different entries"))
    with PAIRS_FILE.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            pairs.append((row["query"], row["listed"], row["label"] == "1", f"hand-labelled {row['category']}"))
    scored = [(engine.score_pair(query, listed).score, label, category) for query, listed, label, category in pairs]
    pair_results = pair_metrics(scored, thresholds)
    pair_sweep = pair_metrics(scored, sweep_levels)["without_alias_pairs"]
    sweep = [
        {
            "threshold": level,
            "search_recall": search_sweep[label]["recall"],
            "search_precision": search_sweep[label]["precision"],
            "pair_recall": pair_sweep[label]["recall"],
            "pair_precision": pair_sweep[label]["precision"],
            "pair_f1": pair_sweep[label]["f1"],
        }
        for label, level in sweep_levels.items()
    ]
    if show_misses:
        misses = [(s, c, q, lst) for (q, lst, label, c), (s, _, _) in zip(pairs, scored, strict=True) if label]
        for score, category, query, listed in sorted(misses)[:show_misses]:
            log.info("pair miss %.3f %s: %r vs %r", score, category, query, listed)

    return {
        "parameters": {
            "seed": seed,
            "entries_sampled": len(sample),
            "innocent_names": innocents,
            "random_pairs": RANDOM_PAIRS,
            "hand_labelled_pairs": str(PAIRS_FILE.relative_to(report.REPO_ROOT)),
            "thresholds": thresholds,
        },
        "index": {
            "entries": len(entries),
            "names": len(engine.index.names),
            "build_s": round(build_s, 3),
            "query_p50_ms": round(statistics.median(latencies_ms), 2),
            "query_p95_ms": round(_percentile(latencies_ms, 95), 2),
            "queries": len(queries),
        },
        "search": search,
        "pairs": pair_results,
        "sweep": sweep,
    }


# ---- labelled queries


def natural(name: str) -> list[str]:
    """The name's words in reading order ("LAST, First" -> First LAST), punctuation kept inside words."""
    if name.count(",") == 1:
        head, tail = name.split(",")
        name = f"{tail} {head}"
    return name.split()


def positives(entry: Any, rng: random.Random) -> list[Query]:
    base = {"positive": True, "list_name": entry.list_name, "entry_id": entry.entry_id, "source": entry.name}
    words = natural(entry.name)
    out: list[Query] = []
    aliases = [name for name in entry.names[1:] if name.kind not in {"name without parentheses", "original script"}]
    if aliases:
        alias = rng.choice(aliases)
        out.append(Query(alias.text, "alias", **{**base, "source": alias.text}))
    if len(words) >= 2:
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        out.append(Query(" ".join(shuffled).title(), "reordered", **base))
    accented = accent(" ".join(words).title(), rng)
    if accented != " ".join(words).title():
        out.append(Query(accented, "accents", **base))
    out.append(Query(punctuate(words, rng), "case and punctuation", **base))
    typo = make_typo(words, rng)
    if typo:
        out.append(Query(typo, "typo", **base))
    variant = transliterate(" ".join(words), rng)
    if variant:
        out.append(Query(variant, "transliteration", **base))
    informative = [word for word in words if len(word) > 3]
    if len(informative) >= 3 and len(words) >= 3:
        dropped = words[:]
        dropped.remove(rng.choice(informative[1:-1] or informative[1:]))
        out.append(Query(" ".join(dropped), "partial (a name dropped)", **base))
    return out


def accent(text: str, rng: random.Random) -> str:
    chars = []
    for char in text:
        options = ACCENTS.get(char.lower())
        if options and rng.random() < 0.5:
            replacement = rng.choice(options)
            chars.append(replacement.upper() if char.isupper() else replacement)
        else:
            chars.append(char)
    return "".join(chars)


def punctuate(words: list[str], rng: random.Random) -> str:
    joiner = rng.choice(["-", " ", ". ", ", "])
    cleaned = [word.strip(",.") for word in words]
    if len(cleaned) >= 2:
        at = rng.randrange(len(cleaned) - 1)
        cleaned[at : at + 2] = [cleaned[at] + joiner + cleaned[at + 1]]
    text = " ".join(cleaned)
    return text.lower() if rng.random() < 0.5 else text.upper()


def make_typo(words: list[str], rng: random.Random) -> str | None:
    long_words = [index for index, word in enumerate(words) if len(word.strip(",.")) >= 5 and word.isalpha()]
    if not long_words:
        return None
    index = rng.choice(long_words)
    word = words[index]
    at = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["substitute", "delete", "transpose", "insert"])
    letters = "abcdefghijklmnopqrstuvwxyz"
    if kind == "substitute":
        word = word[:at] + rng.choice(letters.replace(word[at].lower(), "")).upper() + word[at + 1 :]
    elif kind == "delete":
        word = word[:at] + word[at + 1 :]
    elif kind == "transpose":
        word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    else:
        word = word[:at] + rng.choice(letters).upper() + word[at:]
    typo = words[:]
    typo[index] = word
    return " ".join(typo)


def transliterate(text: str, rng: random.Random) -> str | None:
    lowered = text.lower()
    options = [(old, new) for old, new in TRANSLITERATIONS if old in lowered]
    if not options:
        return None
    old, new = rng.choice(options)
    at = lowered.find(old)
    return (text[:at] + new + text[at + len(old) :]).title()


def near_misses(entry: Any, rng: random.Random, donors: list[str], weight: Callable[[str], float]) -> list[Query]:
    """Another person or organisation that shares part of the name: for names of two or three informative words,
    the rarest word is replaced by a donor word of another entry (not a spelling variant of it). Longer names are
    skipped: with one word of four or more changed, a hit is a fair "possible"."""
    from moncore.compliance.screening.normalize import is_low_information, tokens  # noqa: PLC0415
    from moncore.compliance.screening.scoring import token_similarity  # noqa: PLC0415

    words = natural(entry.name)
    informative = [index for index, word in enumerate(words) if any(not is_low_information(t) for t in tokens(word))]
    if not 2 <= len(informative) <= 3:
        return []
    rarest = max(informative, key=lambda index: (min(weight(t) for t in tokens(words[index])), -index))
    replaced = tokens(words[rarest])
    for _ in range(5):
        donor = rng.choice(donors)
        if all(token_similarity(donor, token) < 0.7 for token in replaced):
            changed = words[:]
            changed[rarest] = donor.upper()
            return [Query(" ".join(changed), "near miss", False, entry.list_name, entry.entry_id, entry.name)]
    return []


def innocent_queries(
    rng: random.Random, count: int, listed: set[tuple[str, ...]], tokens: Callable[[str], tuple[str, ...]]
) -> list[Query]:
    out: list[Query] = []
    seen: set[str] = set()
    while len(out) < count:
        parts = [rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)]
        if rng.random() < 0.2:
            parts.insert(1, rng.choice(FIRST_NAMES))
        text = " ".join(parts)
        if text in seen or tuple(sorted(tokens(text))) in listed:
            continue
        seen.add(text)
        out.append(Query(accent(text, rng) if rng.random() < 0.1 else text, "innocent", False))
    return out


# ---- metrics


def same_entity_clusters(entries: list[Any], tokens: Callable[[str], tuple[str, ...]]) -> dict[tuple[str, str], int]:
    """Entries that share a name token for token (the same person on both lists, or namesakes) in one cluster."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(key: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    by_name: dict[tuple[str, ...], tuple[str, str]] = {}
    for entry in entries:
        key = (entry.list_name, entry.entry_id)
        find(key)
        for name in entry.names:
            normalised = tuple(sorted(tokens(name.text)))
            if normalised in by_name:
                parent[find(key)] = find(by_name[normalised])
            else:
                by_name[normalised] = key
    roots: dict[tuple[str, str], int] = {}
    return {key: roots.setdefault(find(key), len(roots)) for key in list(parent)}


def search_metrics(
    results: list[tuple[Query, list[Any]]],
    thresholds: dict[str, float],
    tokens: Callable[[str], tuple[str, ...]],
    clusters: dict[tuple[str, str], int],
    show_misses: int,
) -> dict[str, Any]:
    """Per category and threshold: recall over positive queries, precision over all hits (module docstring)."""
    by_category: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    shown = 0
    for query, matches in results:
        own_cluster = clusters.get((query.list_name, query.entry_id))
        query_tokens = sorted(tokens(query.text))
        for label, threshold in thresholds.items():
            hits = [match for match in matches if match.score >= threshold]
            counts = by_category[query.category][label]
            counts["queries"] += 1
            correct = 0
            for match in hits:
                same_entity = own_cluster is not None and clusters.get((match.list, match.entry_id)) == own_cluster
                if (query.positive and same_entity) or sorted(tokens(match.matched_name)) == query_tokens:
                    correct += 1
                elif show_misses and shown < show_misses and label == "possible":
                    shown += 1
                    log.info("false hit %s %r -> %r %.3f", query.category, query.text, match.matched_name, match.score)
            if query.positive:
                found = any(clusters.get((match.list, match.entry_id)) == own_cluster for match in hits)
                counts["positives"] += 1
                counts["found"] += int(found)
                if not found and show_misses and shown < show_misses and label == "possible":
                    shown += 1
                    log.info("missed %s %r (%s)", query.category, query.text, query.source)
            counts["hits"] += len(hits)
            counts["correct_hits"] += correct
            counts["queries_with_false_hit"] += int(correct < len(hits))
    overall: dict[str, Counter[str]] = defaultdict(Counter)
    for category_counts in by_category.values():
        for label in thresholds:
            overall[label].update(category_counts[label])
    return {
        "overall": {label: _search_summary(overall[label]) for label in thresholds},
        "categories": {
            category: {label: _search_summary(counts[label]) for label in thresholds}
            for category, counts in sorted(by_category.items())
        },
    }


def _search_summary(counts: Counter[str]) -> dict[str, Any]:
    return {
        "queries": counts["queries"],
        "hits": counts["hits"],
        "recall": _ratio(counts["found"], counts["positives"]),
        "precision": _ratio(counts["correct_hits"], counts["hits"]),
        "queries_with_false_hit": _ratio(counts["queries_with_false_hit"], counts["queries"]),
    }


def pair_metrics(scored: list[tuple[float, bool, str]], thresholds: dict[str, float]) -> dict[str, Any]:
    def metrics(rows: list[tuple[float, bool, str]], threshold: float) -> dict[str, Any]:
        tp = sum(1 for score, label, _ in rows if label and score >= threshold)
        fp = sum(1 for score, label, _ in rows if not label and score >= threshold)
        fn = sum(1 for score, label, _ in rows if label and score < threshold)
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = None
        if precision is not None and recall is not None and precision + recall:
            f1 = round(2 * precision * recall / (precision + recall), 4)
        return {"pairs": len(rows), "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}

    categories: dict[str, list[tuple[float, bool, str]]] = defaultdict(list)
    for row in scored:
        categories[row[2]].append(row)
    spelling = [row for row in scored if row[2] != "alias vs primary name"]
    return {
        "overall": {label: metrics(scored, threshold) for label, threshold in thresholds.items()},
        "without_alias_pairs": {label: metrics(spelling, threshold) for label, threshold in thresholds.items()},
        "categories": {
            category: {label: metrics(rows, threshold) for label, threshold in thresholds.items()}
            for category, rows in sorted(categories.items())
        },
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


# ---- report


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def markdown(data: dict[str, Any]) -> str:
    parameters, index, search, pairs = data["parameters"], data["index"], data["search"], data["pairs"]
    possible, confirmed = parameters["thresholds"]["possible"], parameters["thresholds"]["confirmed"]
    lines = [
        "## Screening: precision and recall of name matching",
        "",
        f"`python -m bench screening` (bench/screening.py), {data['date']}: {parameters['entries_sampled']} entries "
        f"sampled (seed {parameters['seed']}) from the shipped OFAC SDN and UN lists ({index['entries']} entries, "
        f"{index['names']} names and aliases indexed in {index['build_s']} s), {parameters['innocent_names']} "
        f"generated innocent names, and the hand-labelled pairs of `{parameters['hand_labelled_pairs']}`. "
        f"Thresholds: possible >= {possible}, confirmed >= {confirmed}. Raw data: "
        "[bench/results/screening.json](../bench/results/screening.json); method: [screening.md](screening.md).",
        "",
        f"### Search (`POST /v1/screening/checks`): {index['queries']} queries, p50 {index['query_p50_ms']} ms, "
        f"p95 {index['query_p95_ms']} ms per query",
        "",
        "| queries | n | recall (possible) | recall (confirmed) | precision (possible) | precision (confirmed) "
        "| queries with a false hit (possible / confirmed) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*search["categories"].items(), ("**all**", search["overall"])]
    for category, by_label in rows:
        p, c = by_label["possible"], by_label["confirmed"]
        negative = p["recall"] is None
        lines.append(
            f"| {category} | {p['queries']} | {_pct(p['recall'])} | {_pct(c['recall'])} | "
            f"{'-' if negative else _pct(p['precision'])} | {'-' if negative else _pct(c['precision'])} | "
            f"{_pct(p['queries_with_false_hit'])} / {_pct(c['queries_with_false_hit'])} |"
        )
    lines += [
        "",
        f"### Pairs (`moncore screening score`): {pairs['overall']['possible']['pairs']} labelled pairs",
        "",
        "| pairs | n | precision (possible) | recall (possible) | F1 (possible) | false positives (possible) "
        "| precision (confirmed) | recall (confirmed) | F1 (confirmed) | false positives (confirmed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*pairs["categories"].items(), ("**all but alias pairs**", pairs["without_alias_pairs"])]
    rows.append(("**all**", pairs["overall"]))
    for category, by_label in rows:
        p, c = by_label["possible"], by_label["confirmed"]
        negative = p["tp"] + p["fn"] == 0
        lines.append(
            f"| {category} | {p['pairs']} | {'-' if negative else _pct(p['precision'])} | {_pct(p['recall'])} | "
            f"{_pct(p['f1'])} | {p['fp']} | {'-' if negative else _pct(c['precision'])} | {_pct(c['recall'])} | "
            f"{_pct(c['f1'])} | {c['fp']} |"
        )
    lines += [
        "",
        "### Threshold sweep (all queries; pairs without the alias-vs-primary pairs)",
        "",
        "| threshold | search recall | search precision | pair recall | pair precision | pair F1 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data.get("sweep", []):
        if round(row["threshold"] * 100) % 2 == 0 and row["threshold"] >= 0.76:
            lines.append(
                f"| {row['threshold']:.2f} | {_pct(row['search_recall'])} | {_pct(row['search_precision'])} | "
                f"{_pct(row['pair_recall'])} | {_pct(row['pair_precision'])} | {_pct(row['pair_f1'])} |"
            )
    lines += [
        "",
        "- Search recall: share of positive queries whose entry (or the same name on the other list) came back at or "
        "above the threshold. Search precision: correct hits / all hits over every query (positive, near miss and "
        "innocent); a hit is correct when it is the query's entry, an entry listing the same name token for token "
        "(the same person on the other list, or a namesake), or a listed name equal to the query. It is a lower "
        "bound: a differently spelt duplicate (ATABIEV / ATABIYEV on the two lists) or a relative sharing four of "
        "five names counts as false, though a reviewer would want to see it.",
        "- Negative rows (innocent, near miss) have no recall; what counts is how many of their queries got a hit "
        "(last column) or how many pairs crossed the threshold (false positives). *alias vs primary name* pairs "
        "each alias of the sampled entries with its primary name, as the data README suggests; many share no token "
        '("NATIONAL BANK OF CUBA" / "BANCO NACIONAL DE CUBA"), which is why the engine indexes every alias '
        "instead of relying on the name score (search recall for aliases is the number that matters).",
        f"- Machine: {data['machine']['cpu_count']} CPUs, Python {data['machine']['python']}; timings are local.",
    ]
    return "\n".join(lines)
