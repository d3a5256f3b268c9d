"""`moncore verify BUNDLE.zip [--public-key FILE]`: an evidence bundle checked offline (docs/audit.md "Verifying a
bundle offline"). No AWS, no network: this module imports the standard library, `cryptography` and MonCore's pure
formats only (domain.seals, domain.merkle, domain.canonical, domain.bundles), so a regulator can run it anywhere.

What holds when it answers ok, in the order it checks (it stops at the FIRST failure and names it: file, row, block,
item, expected and found values):

1. manifest.json is signed: manifest.sig is a valid ECDSA P-256 / SHA-256 signature of its bytes under the public
   key (--public-key, obtained from MonCore out of band; else the bundle's public_key.pem, which proves integrity
   but not origin: the report says which key was used and its SHA-256 fingerprint).
2. The ZIP holds exactly the files the manifest lists (plus manifest, signature and key).
3. blocks.jsonl: each block is the next of the chain run the manifest names (first block links to the manifest's
   previous_block_hash, block 1 to 64 zeros), hashes to its block hash, is signed by the key, and its leaves are the
   ones its Merkle root, item count and cursors commit to; no item is sealed twice; the run ends at the manifest's
   head.
4. Every row of a sealed file (ledger: legs; audit, compliance_timeline: audit events) is a sealed item of the
   scope: SHA-256 of its line is the item hash of a leaf of that kind in one of the blocks, once. Every leaf of the
   scope is a row of ledger.jsonl (legs) and audit.jsonl (audit events) when those are exported.
5. Every file's SHA-256 and row count are the manifest's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moncore.domain.bundles import (
    BLOCKS,
    BLOCKS_KIND,
    BUNDLE_FORMAT,
    COMPLETE,
    INSTANT_RE,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    PUBLIC_KEY,
    SIGNATURE,
    in_scope,
)
from moncore.domain.seals import (
    KINDS,
    ChainFailure,
    Leaf,
    SealedBlock,
    SealFormatError,
    check_block,
    check_segment_start,
    index_leaves,
)

_CHUNK_BYTES = 1 << 20
_MAX_SMALL_FILE_BYTES = 64 * 1024  # manifest, signature, key: anything bigger is not one
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class BundleFailure:
    """The first check that does not hold: what (code), where (file, 1-based row, block, item) and the values that
    differ (expected = what the signed evidence says, found = what the bundle holds)."""

    code: str
    detail: str
    file: str | None = None
    row: int | None = None
    block_seq: int | None = None
    item: dict[str, str] | None = None
    expected: str | None = None
    found: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "detail": self.detail,
            "file": self.file,
            "row": self.row,
            "block_seq": self.block_seq,
            "item": self.item,
            "expected": self.expected,
            "found": self.found,
        }


@dataclass(frozen=True, slots=True)
class Report:
    ok: bool
    failure: BundleFailure | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "failure": self.failure and self.failure.to_json(), "summary": self.summary}


class _Failed(Exception):
    def __init__(self, failure: BundleFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


def _fail(code: str, detail: str, **where: Any) -> _Failed:
    return _Failed(BundleFailure(code, detail, **where))


def _from_chain(failure: ChainFailure, file: str, row: int) -> _Failed:
    return _Failed(
        BundleFailure(
            failure.code,
            f"{file} row {row}: {failure.detail}",
            file,
            row,
            failure.block_seq,
            failure.item,
            failure.expected,
            failure.found,
        )
    )


def verify_bundle(path: Path | str, public_key: bytes | None = None) -> Report:
    """Check the bundle at `path`; `public_key` (PEM or DER) is the key to trust, else the bundle's own."""
    try:
        with zipfile.ZipFile(path) as archive:
            return Report(True, None, _Verifier(archive, public_key).run())
    except _Failed as failed:
        return Report(False, failed.failure)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:  # unreadable, truncated, not a ZIP
        return Report(False, BundleFailure("bundle_unreadable", f"the bundle cannot be read as a ZIP: {exc}"))


# A leaf of the bundle's blocks, by its item hash: (block seq, position in the block, the leaf).
_Sealed = tuple[int, int, Leaf]


class _Verifier:
    def __init__(self, archive: zipfile.ZipFile, trusted_key: bytes | None) -> None:
        self.zip = archive
        self.trusted_key = trusted_key
        self.by_hash: dict[str, _Sealed] = {}  # item hash -> the leaf that seals it
        self.sealed_in: dict[tuple[str, str, str], int] = {}  # (kind, pk, sk) -> block seq
        self.in_scope_count = dict.fromkeys(KINDS, 0)
        self.key_id = ""
        self.key_der = b""

    # ------------------------------------------------------------ driver
    def run(self) -> dict[str, Any]:
        manifest, key_source = self._signed_manifest()
        self._check_listing(manifest)
        entries = {entry["name"]: entry for entry in manifest["files"]}
        blocks = self._blocks(manifest, entries[BLOCKS])
        rows = {}
        for entry in manifest["files"]:
            if entry["kind"] != BLOCKS_KIND:
                rows[entry["name"]] = self._data_file(manifest, entry)
        return {
            "bundle": manifest.get("id"),
            "tenant_id": manifest["tenant_id"],
            "scope": manifest["scope"],
            "files": len(manifest["files"]),
            "rows": rows,
            "blocks": blocks,
            "sealed_items_in_scope": {kind: count for kind, count in self.in_scope_count.items()},
            "public_key": {"source": key_source, "sha256": hashlib.sha256(self.key_der).hexdigest()},
        }

    # ------------------------------------------------------------ 1-2. manifest, signature, listing
    def _small(self, name: str) -> bytes:
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise _fail("file_missing", f"the bundle has no {name}", file=name) from None
        if info.file_size > _MAX_SMALL_FILE_BYTES:
            raise _fail("file_too_large", f"{name} is {info.file_size} bytes", file=name)
        return self.zip.read(name)

    def _signed_manifest(self) -> tuple[dict[str, Any], str]:
        names = self.zip.namelist()
        if len(names) != len(set(names)):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise _fail("duplicate_file", f"the ZIP holds {twice[0]} more than once", file=twice[0])
        data = self._small(MANIFEST)
        signature = self._small(SIGNATURE)
        source = "argument" if self.trusted_key is not None else "bundle"
        key = self._load_key(self.trusted_key if self.trusted_key is not None else self._small(PUBLIC_KEY), source)
        try:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise _fail(
                "manifest_signature_invalid",
                f"{SIGNATURE} is not a signature of {MANIFEST} by the {source} key: the manifest was altered or "
                "signed by another key",
                file=MANIFEST,
                expected=hashlib.sha256(self.key_der).hexdigest(),
                found=hashlib.sha256(data).hexdigest(),
            ) from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise _fail("manifest_format", f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes", file=MANIFEST)
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise _fail("manifest_format", f"{MANIFEST} is not JSON: {exc}", file=MANIFEST) from None
        self._check_manifest(manifest)
        self.key_id = str(manifest["signature"]["key_id"])
        return manifest, source

    def _load_key(self, data: bytes, source: str) -> ec.EllipticCurvePublicKey:
        try:
            key = (
                serialization.load_pem_public_key(data)
                if data.lstrip().startswith(b"-----")
                else serialization.load_der_public_key(data)
            )
        except (ValueError, TypeError) as exc:
            detail = f"the {source} public key cannot be read: {exc}"
            raise _fail("public_key_invalid", detail, file=PUBLIC_KEY) from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise _fail("public_key_invalid", f"the {source} public key is not an ECC P-256 key", file=PUBLIC_KEY)
        self.key_der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return key

    @staticmethod
    def _check_manifest(manifest: Any) -> None:
        def bad(what: str) -> _Failed:
            return _fail("manifest_format", f"{MANIFEST}: {what}", file=MANIFEST)

        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise bad(f"not a {BUNDLE_FORMAT} manifest")
        scope = manifest.get("scope")
        if not isinstance(manifest.get("tenant_id"), str) or not isinstance(scope, dict):
            raise bad("no tenant_id or scope")
        if not all(isinstance(scope.get(end), str) and INSTANT_RE.match(scope[end]) for end in ("from", "to")):
            raise bad("the scope needs from and to as YYYY-MM-DDTHH:MM:SS.ffffffZ instants")
        if not isinstance(manifest.get("signature"), dict) or "key_id" not in manifest["signature"]:
            raise bad("no signature key_id")
        files = manifest.get("files")
        if not isinstance(files, list):
            raise bad("no files list")
        for entry in files:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("name"), str)
                and isinstance(entry.get("kind"), str)
                and isinstance(entry.get("rows"), int)
                and isinstance(entry.get("sha256"), str)
                and entry.get("sealed") in (None, *KINDS)
            ):
                raise bad(f"a files entry is malformed: {entry!r}")
        names = [entry["name"] for entry in files]
        if len(names) != len(set(names)) or names.count(BLOCKS) != 1:
            raise bad(f"files must name each file once and {BLOCKS} exactly once")
        blocks = manifest.get("blocks")
        if not isinstance(blocks, dict) or not isinstance(blocks.get("count"), int):
            raise bad("no blocks section")

    def _check_listing(self, manifest: dict[str, Any]) -> None:
        listed = [entry["name"] for entry in manifest["files"]]
        present = set(self.zip.namelist())
        for name in listed:
            if name not in present:
                raise _fail("file_missing", f"{name} is in the manifest but not in the bundle", file=name)
        extra = sorted(present - set(listed) - {MANIFEST, SIGNATURE, PUBLIC_KEY})
        if extra:
            raise _fail("unexpected_file", f"{extra[0]} is in the bundle but not in the manifest", file=extra[0])

    # ------------------------------------------------------------ 3. blocks
    def _public_key(self, key_id: str) -> bytes | None:
        return self.key_der if key_id == self.key_id else None

    def _blocks(self, manifest: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        stated = manifest["blocks"]
        tenant_id = str(manifest["tenant_id"])
        scope_from, scope_to = manifest["scope"]["from"], manifest["scope"]["to"]
        stream = _Reader(self.zip.open(BLOCKS))
        previous: SealedBlock | None = None
        first: SealedBlock | None = None
        count = 0
        for row, data in enumerate(stream.lines(), start=1):
            try:
                sealed = SealedBlock.from_document(json.loads(data))
            except (ValueError, SealFormatError) as exc:
                detail = f"{BLOCKS} row {row} is not a sealed block: {exc}"
                raise _fail("block_format", detail, file=BLOCKS, row=row) from None
            if previous is None:
                first_seq = stated.get("first_seq")
                if not isinstance(first_seq, int):
                    raise _fail("blocks_mismatch", f"{BLOCKS} holds blocks the manifest does not", file=BLOCKS, row=row)
                chain = check_segment_start(
                    sealed,
                    first_seq,
                    str(stated.get("previous_block_hash")),
                    tenant_id=tenant_id,
                    public_key=self._public_key,
                )
            else:
                chain = check_block(sealed, previous, tenant_id=tenant_id, public_key=self._public_key)
            failure = chain or index_leaves(sealed, self.sealed_in)
            if failure is not None:
                raise _from_chain(failure, BLOCKS, row)
            self._index(sealed, scope_from, scope_to)
            first = first or sealed
            previous = sealed
            count += 1
        found = {
            "count": count,
            "first_seq": first and first.seq,
            "last_seq": previous and previous.seq,
            "head_hash": previous and previous.block_hash,
        }
        for name in ("count", "first_seq", "last_seq", "head_hash"):
            if found[name] != stated.get(name):
                raise _fail(
                    "blocks_mismatch",
                    f"{BLOCKS} ends with {found[name]!r} as {name}, the manifest says {stated.get(name)!r} (blocks "
                    "were dropped or added)",
                    file=BLOCKS,
                    block_seq=found["last_seq"],
                    expected=str(stated.get(name)),
                    found=str(found[name]),
                )
        self._check_file(entry, stream, count)
        return found

    def _index(self, sealed: SealedBlock, scope_from: str, scope_to: str) -> None:
        by_hash, counts, seq = self.by_hash, self.in_scope_count, sealed.seq
        for position, leaf in enumerate(sealed.leaves):
            by_hash[leaf.item_hash] = (seq, position, leaf)
            ref = leaf.ref
            if in_scope(ref.cursor, scope_from, scope_to):
                counts[ref.kind] += 1

    # ------------------------------------------------------------ 4-5. data files
    def _data_file(self, manifest: dict[str, Any], entry: dict[str, Any]) -> int:
        name, kind, sealed = entry["name"], entry["kind"], entry["sealed"]
        stream = _Reader(self.zip.open(name))
        if entry.get("format") == "csv":
            rows = _csv_rows(name, stream, lambda: self.zip.open(name))
        elif sealed is None:
            rows = sum(1 for _ in stream.lines())
        else:
            rows = self._sealed_rows(manifest, name, sealed, stream, complete=COMPLETE.get(kind) == sealed)
        self._check_file(entry, stream, rows)
        return rows

    def _sealed_rows(self, manifest: dict[str, Any], name: str, kind: str, stream: _Reader, *, complete: bool) -> int:
        scope_from, scope_to = manifest["scope"]["from"], manifest["scope"]["to"]
        by_hash = self.by_hash
        seen: set[str] = set()
        rows = 0
        sha256 = hashlib.sha256
        for rows, data in enumerate(stream.lines(), start=1):
            digest = sha256(data).hexdigest()
            hit = by_hash.get(digest)
            if hit is None:
                raise self._unsealed_row(name, rows, data, kind, digest)
            ref = hit[2].ref
            if ref.kind != kind or digest in seen or not scope_from <= ref.cursor < scope_to:  # in_scope, inlined
                raise self._misplaced_row(name, rows, kind, hit, duplicate=digest in seen)
            seen.add(digest)
        if complete and len(seen) != self.in_scope_count[kind]:
            raise self._missing_row(name, kind, seen, scope_from, scope_to)
        return rows

    def _unsealed_row(self, name: str, row: int, data: bytes, kind: str, digest: str) -> _Failed:
        """A row whose hash no leaf holds: changed after it was sealed (a leaf with its key exists), or never sealed."""
        try:
            item = json.loads(data)
            key = (kind, str(item["pk"]), str(item["sk"]))
        except (ValueError, KeyError, TypeError):
            detail = f"{name} row {row} is not a sealed item (JSON with pk and sk)"
            return _fail("row_format", detail, file=name, row=row)
        what = "leg" if kind == "leg" else "audit event"
        seq = self.sealed_in.get(key)
        described = {"kind": kind, "pk": key[1], "sk": key[2]}
        if seq is None:
            return _fail(
                "item_unsealed",
                f"{name} row {row}: the {what} {key[1]} / {key[2]} is in no block of the bundle",
                file=name,
                row=row,
                item=described,
                found=digest,
            )
        _, position, leaf = next(entry for entry in self.by_hash.values() if entry[2].key == key)
        return _fail(
            "item_hash_mismatch",
            f"{name} row {row}: the {what} {key[1]} / {key[2]} differs from the item block {seq} sealed (leaf "
            f"{position})",
            file=name,
            row=row,
            block_seq=seq,
            item=leaf.ref.describe(),
            expected=leaf.item_hash,
            found=digest,
        )

    @staticmethod
    def _misplaced_row(name: str, row: int, kind: str, hit: _Sealed, *, duplicate: bool) -> _Failed:
        seq, position, leaf = hit
        ref = leaf.ref
        if duplicate:
            code, why = "row_duplicated", "appears twice"
        elif ref.kind != kind:
            code, why = "row_kind_mismatch", f"is a sealed {ref.kind}, not a {kind}"
        else:
            code, why = "row_out_of_scope", f"was recorded at {ref.cursor.split('#', 1)[0]}, outside the scope"
        return _fail(
            code,
            f"{name} row {row}: the item {ref.pk} / {ref.sk} (block {seq}, leaf {position}) {why}",
            file=name,
            row=row,
            block_seq=seq,
            item=ref.describe(),
            found=leaf.item_hash,
        )

    def _missing_row(self, name: str, kind: str, seen: set[str], scope_from: str, scope_to: str) -> _Failed:
        """The first leaf of the scope (block order) that no row of the file shows: a row was dropped."""
        for seq, position, leaf in self.by_hash.values():
            if leaf.ref.kind == kind and leaf.item_hash not in seen and in_scope(leaf.ref.cursor, scope_from, scope_to):
                what = "leg" if kind == "leg" else "audit event"
                return _fail(
                    "row_missing",
                    f"{name}: the {what} {leaf.ref.pk} / {leaf.ref.sk} sealed in block {seq} (leaf "
                    f"{position}) is in the scope but in no row (a row was dropped)",
                    file=name,
                    block_seq=seq,
                    item=leaf.ref.describe(),
                    expected=leaf.item_hash,
                )
        return _fail("row_missing", f"{name} lacks sealed items of the scope", file=name)  # unreachable in practice

    @staticmethod
    def _check_file(entry: dict[str, Any], stream: _Reader, rows: int) -> None:
        name = entry["name"]
        stream.drain()
        digest = stream.sha256
        if digest != str(entry["sha256"]).lower() or not _is_sha256(entry["sha256"]):
            raise _fail(
                "file_hash_mismatch",
                f"{name}'s SHA-256 is not the manifest's: the file was changed",
                file=name,
                expected=str(entry["sha256"]),
                found=digest,
            )
        if rows != entry["rows"]:
            raise _fail(
                "file_rows_mismatch",
                f"{name} has {rows} rows, the manifest says {entry['rows']}",
                file=name,
                expected=str(entry["rows"]),
                found=str(rows),
            )


def _is_sha256(text: Any) -> bool:
    return isinstance(text, str) and len(text) == 64 and set(text.lower()) <= _HEX


class _Reader(io.RawIOBase):
    """A file of the ZIP read once, in chunks, with its SHA-256 computed on the way (whatever reads it: `lines()` or
    a CSV parser)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self._digest.update(data)
        buffer[: len(data)] = data
        return len(data)

    def chunks(self) -> Iterator[bytes]:
        while True:
            data = self._raw.read(_CHUNK_BYTES)
            if not data:
                return
            self._digest.update(data)
            yield data

    def lines(self) -> Iterator[bytes]:
        """The file's lines without their "\\n" (a last line without one is a line too)."""
        carry = b""
        for data in self.chunks():
            parts = (carry + data).split(b"\n")
            carry = parts.pop()
            yield from parts
        if carry:
            yield carry

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _csv_rows(name: str, stream: _Reader, reopen: Callable[[], IO[bytes]]) -> int:
    """Records after the header line. Without a quote character a record is a line (counted, fast); a quoted field
    may span lines, so a file with quotes is parsed as CSV (read once more, from the ZIP)."""
    lines = quoted = 0
    for data in stream.chunks():
        lines += data.count(b"\n")
        quoted = quoted or b'"' in data
    if not quoted:
        return max(lines - 1, 0)
    text = io.TextIOWrapper(reopen(), encoding="utf-8", newline="")
    try:
        records = sum(1 for _ in csv.reader(text))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _fail("csv_format", f"{name} is not a CSV file: {exc}", file=name) from None
    return max(records - 1, 0)


def describe(failure: BundleFailure) -> str:
    """One paragraph for a person: what failed and where, then the differing values."""
    where = ", ".join(
        part
        for part in (
            failure.file and f"file {failure.file}",
            failure.row is not None and f"row {failure.row}",
            failure.block_seq is not None and f"block {failure.block_seq}",
            failure.item and f"item {failure.item.get('kind')} {failure.item.get('pk')} / {failure.item.get('sk')}",
        )
        if part
    )
    lines = [f"FAILED {failure.code}: {failure.detail}"]
    if where:
        lines.append(f"  where: {where}")
    if failure.expected is not None:
        lines.append(f"  expected: {failure.expected}")
    if failure.found is not None:
        lines.append(f"  found: {failure.found}")
    return "\n".join(lines)
