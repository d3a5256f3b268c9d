"""Evidence bundles (partner exports and regulator bundles; docs/audit.md "Exports and evidence bundles"): what the ZIP
holds and what its manifest says, shared by the exporter (moncore/audit/exports.py) and the offline verifier
(moncore/audit/verifier.py). Pure: the verifier runs with no AWS and no network, so this module imports only the
seal formats and canonical JSON.

    <kind>.jsonl       one row per line. Rows of sealed kinds (ledger: legs; audit, compliance_timeline: audit
                       events) are the stored items as sealed (domain.seals.plain_item), each line the item's RFC 8785
                       canonical JSON: SHA-256 of a line (without its "\\n") IS the item hash its block's leaf holds.
    <kind>.csv         the same rows for people (a header line, then one record per row; fixed columns below).
    blocks.jsonl       the sealed block documents (domain.seals.SealedBlock.to_document, canonical JSON, one per line)
                       of the contiguous run of blocks lo..hi holding every sealed row of the scope.
    manifest.json      RFC 8785 bytes of the manifest (build_manifest): per file name, SHA-256 and rows; tenant, time
                       scope, operator, blocks covered, created_at, format. At most 4 KiB (KMS signs RAW messages).
    manifest.sig       the KMS signature (ECDSA_SHA_256, P-256, DER) over manifest.json's bytes, as blocks are signed:
                       `openssl dgst -sha256 -verify public_key.pem -signature manifest.sig manifest.json`.
    public_key.pem     the signing key's public key (SubjectPublicKeyInfo, PEM).

Scope: rows recorded at `from` <= recorded_at < `to` (a row's cursor starts with its recorded_at).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from moncore.domain.canonical import canonical_bytes
from moncore.domain.seals import AUDIT, LEG

BUNDLE_FORMAT = "moncore-evidence-bundle/1"
INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")  # domain.clock's one format: scope bounds
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
BLOCKS = "blocks.jsonl"
BLOCKS_KIND = "blocks"
MAX_MANIFEST_BYTES = 4096  # KMS signs RAW messages of at most 4 KiB (store/signing.py)

LEDGER = "ledger"
EXPOSURE = "exposure"
COMPLIANCE_TIMELINE = "compliance_timeline"
AUDIT_EVENTS = "audit"
KINDS = (LEDGER, EXPOSURE, COMPLIANCE_TIMELINE, AUDIT_EVENTS)
# Which sealed item kind a kind's rows are (None: derived rows, not sealed items).
SEALED: dict[str, str | None] = {LEDGER: LEG, EXPOSURE: None, COMPLIANCE_TIMELINE: AUDIT, AUDIT_EVENTS: AUDIT}
# Kinds whose file holds EVERY sealed item of its kind in scope (the verifier checks that none is missing);
# compliance_timeline is a selection of audit events, so only its rows' seals are checked.
COMPLETE: dict[str, str] = {LEDGER: LEG, AUDIT_EVENTS: AUDIT}

# Audit actions that belong on a compliance timeline: screening, KYC, AML refusals, cases, freezes, tier changes.
COMPLIANCE_ACTION_PREFIXES = (
    "compliance.",
    "screening.",
    "kyc_check.",
    "case.",
    "aml.",
    "user.frozen",
    "user.unfrozen",
    "user.tier_downgraded",
    "account.frozen",
    "account.unfrozen",
    "card.authorization_declined",
)

_AUDIT_COLUMNS = ("recorded_at", "event_id", "action", "actor", "subject_id", "correlation_id", "payload_hash")
COLUMNS: dict[str, tuple[str, ...]] = {
    LEDGER: (
        "recorded_at",
        "txn_id",
        "sk",
        "account_id",
        "account_kind",
        "user_id",
        "currency",
        "leg_amount_minor",
        "phase",
        "effective_at",
        "correlation_id",
        "item_hash",
    ),
    AUDIT_EVENTS: (*_AUDIT_COLUMNS, "item_hash"),
    COMPLIANCE_TIMELINE: (*_AUDIT_COLUMNS, "item_hash"),
    EXPOSURE: ("day", "currency", "account_kind", "phase", "debit_minor", "credit_minor", "net_minor", "legs"),
}


def jsonl_name(kind: str) -> str:
    return f"{kind}.jsonl"


def csv_name(kind: str) -> str:
    return f"{kind}.csv"


def in_scope(cursor: str, scope_from: str, scope_to: str) -> bool:
    """Whether a sealed item (by its cursor, "<recorded_at>#...") falls in the scope [from, to). Instants have one
    fixed-width format (INSTANT_RE), so comparing the cursor itself with the bounds compares its instant: an item
    recorded exactly at `to` has a cursor "<to>#..." that sorts after `to`."""
    return scope_from <= cursor < scope_to


def is_compliance_action(action: str) -> bool:
    return action.startswith(COMPLIANCE_ACTION_PREFIXES)


def line(row: Mapping[str, Any]) -> bytes:
    """One JSONL line: the row's RFC 8785 canonical JSON and "\\n" (canonical JSON never holds a raw newline)."""
    return canonical_bytes(dict(row)) + b"\n"


def csv_values(kind: str, row: Mapping[str, Any], item_hash: str | None = None) -> list[str]:
    """The row's CSV record in COLUMNS[kind] order; absent attributes are empty."""
    values = []
    for column in COLUMNS[kind]:
        value = item_hash if column == "item_hash" else row.get(column)
        values.append("" if value is None else str(value))
    return values


class ExposureTally:
    """Exposure over the scope, derived from its legs: per UTC day, currency, account kind and phase, the debits and
    credits in minor units and the number of legs. A regulator recomputes it from ledger.jsonl. Memory grows with
    days x currencies, never with legs."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])

    def add(self, leg: Mapping[str, Any]) -> None:
        amount = leg.get("leg_amount_minor")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValueError(f"leg {leg.get('pk')} / {leg.get('sk')} has no integer leg_amount_minor")
        key = (
            str(leg.get("recorded_at", ""))[:10],
            str(leg.get("currency", "")),
            str(leg.get("account_kind", "")),
            str(leg.get("phase", "")),
        )
        sums = self._sums[key]
        sums[0 if amount < 0 else 1] += abs(amount)
        sums[2] += 1

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "day": day,
                "currency": currency,
                "account_kind": kind,
                "phase": phase,
                "debit_minor": debit,
                "credit_minor": credit,
                "net_minor": credit - debit,
                "legs": legs,
            }
            for (day, currency, kind, phase), (debit, credit, legs) in sorted(self._sums.items())
        ]


def file_entry(name: str, kind: str, rows: int, sha256: str) -> dict[str, Any]:
    """A manifest `files` entry. `sealed` names the item kind the rows are (leg / audit) for sealed JSONL files."""
    form = name.rsplit(".", 1)[-1]
    sealed = SEALED.get(kind) if form == "jsonl" else None
    return {"name": name, "kind": kind, "format": form, "sealed": sealed, "rows": rows, "sha256": sha256}


def build_manifest(
    *,
    bundle_id: str,
    origin: str,
    tenant_id: str,
    scope_from: str,
    scope_to: str,
    kinds: Iterable[str],
    requested_by: Mapping[str, Any],
    requested_at: str,
    created_at: str,
    files: Sequence[Mapping[str, Any]],
    blocks: Mapping[str, Any],
    key_id: str,
    algorithm: str,
) -> dict[str, Any]:
    return {
        "format": BUNDLE_FORMAT,
        "id": bundle_id,
        "origin": origin,
        "tenant_id": tenant_id,
        "scope": {"from": scope_from, "to": scope_to, "field": "recorded_at", "bounds": "[from, to)"},
        "kinds": list(kinds),
        "requested_by": dict(requested_by),
        "requested_at": requested_at,
        "created_at": created_at,
        "files": [dict(entry) for entry in files],
        "blocks": dict(blocks),
        "signature": {"key_id": key_id, "algorithm": algorithm, "file": SIGNATURE, "public_key": PUBLIC_KEY},
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """What manifest.json holds and KMS signs: the manifest's RFC 8785 bytes, at most MAX_MANIFEST_BYTES."""
    data = canonical_bytes(dict(manifest))
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"the manifest is {len(data)} bytes; KMS signs at most {MAX_MANIFEST_BYTES} raw")
    return data
