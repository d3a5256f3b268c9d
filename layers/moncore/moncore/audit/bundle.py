"""Writing an evidence bundle ZIP (layout: moncore/domain/bundles.py) with bounded memory. No AWS here: the exporter
(moncore/audit/exports.py) feeds it rows read page by page and a KMS signer; the verifier's tests feed it hand-built
rows and a local key.

Every output file is spooled to its own file on disk as rows arrive (hashed and counted on the way), so a pass over
the legs can feed ledger.jsonl, ledger.csv and the exposure tally at once and no dataset is ever held in memory; the
ZIP is assembled from the spools at the end (zipfile streams each one in chunks) and written to disk, from where it
is uploaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from moncore.domain.bundles import (
    BLOCKS,
    BLOCKS_KIND,
    COLUMNS,
    MANIFEST,
    PUBLIC_KEY,
    SEALED,
    SIGNATURE,
    csv_name,
    csv_values,
    file_entry,
    jsonl_name,
    line,
)
from moncore.domain.canonical import canonical_bytes
from moncore.domain.seals import SealedBlock

_BUFFER_BYTES = 1 << 20


class Spool:
    """One bundle file on disk: bytes appended, SHA-256 and row count kept as they pass."""

    def __init__(self, directory: Path, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.path = directory / name
        self.rows = 0
        self._digest = hashlib.sha256()
        self._file: BinaryIO = self.path.open("wb", buffering=_BUFFER_BYTES)

    def write(self, data: bytes, rows: int = 1) -> None:
        self._file.write(data)
        self._digest.update(data)
        self.rows += rows

    def close(self) -> None:
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def entry(self) -> dict[str, Any]:
        return file_entry(self.name, self.kind, self.rows, self.sha256)


class KindFiles:
    """<kind>.jsonl and <kind>.csv: each row once as canonical JSON, once as a CSV record (with the item hash for
    sealed kinds: the SHA-256 of the JSONL line)."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.kind = kind
        self.jsonl = Spool(directory, jsonl_name(kind), kind)
        self.csv = Spool(directory, csv_name(kind), kind)
        self._sealed = SEALED[kind] is not None
        self._text = io.StringIO()
        self._writer = csv.writer(self._text)  # RFC 4180: CRLF records, quoting where needed
        self._writer.writerow(COLUMNS[kind])
        self._flush_csv(rows=0)

    def add(self, row: Mapping[str, Any]) -> None:
        data = line(row)
        self.jsonl.write(data)
        item_hash = hashlib.sha256(data[:-1]).hexdigest() if self._sealed else None
        self._writer.writerow(csv_values(self.kind, row, item_hash))
        self._flush_csv(rows=1)

    def _flush_csv(self, rows: int) -> None:
        self.csv.write(self._text.getvalue().encode("utf-8"), rows)
        self._text.seek(0)
        self._text.truncate()

    def close(self) -> None:
        self.jsonl.close()
        self.csv.close()


class BlockFile:
    """blocks.jsonl: the sealed block documents in seq order, and what the manifest says about them."""

    def __init__(self, directory: Path) -> None:
        self.spool = Spool(directory, BLOCKS, BLOCKS_KIND)
        self.count = 0
        self.first: SealedBlock | None = None
        self.last: SealedBlock | None = None

    def add(self, sealed: SealedBlock) -> None:
        self.spool.write(canonical_bytes(sealed.to_document()) + b"\n")
        self.count += 1
        self.first = self.first or sealed
        self.last = sealed

    def entry(self) -> dict[str, Any]:
        """The manifest's `blocks` section: which run of the chain (first/last seq), the hash block first_seq links
        to, and the head (the last block's hash)."""
        if self.first is None or self.last is None:
            return {"file": BLOCKS, "count": 0, "first_seq": None, "last_seq": None}
        return {
            "file": BLOCKS,
            "count": self.count,
            "first_seq": self.first.seq,
            "last_seq": self.last.seq,
            "previous_block_hash": str(self.first.block.get("previous_block_hash")),
            "head_hash": self.last.block_hash,
        }


class BundleWriter:
    """Spools in a work directory, then one ZIP. Use `kind()` per exported kind (in manifest order), `blocks`, then
    `finish()` with the manifest builder and the signer."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kinds: list[KindFiles] = []
        self.blocks = BlockFile(workdir)

    def kind(self, kind: str) -> KindFiles:
        files = KindFiles(self.workdir, kind)
        self.kinds.append(files)
        return files

    def spools(self) -> list[Spool]:
        return [spool for files in self.kinds for spool in (files.jsonl, files.csv)] + [self.blocks.spool]

    def finish(
        self,
        path: Path,
        manifest_of: Callable[[list[dict[str, Any]], dict[str, Any]], bytes],
        sign: Callable[[bytes], bytes],
        public_key_pem: bytes,
    ) -> bytes:
        """Close the spools, build the manifest bytes from their entries (`manifest_of(files, blocks)`), sign them
        (`sign` answers the DER signature) and write the ZIP at `path`; returns the manifest bytes."""
        for files in self.kinds:
            files.close()
        self.blocks.spool.close()
        spools = self.spools()
        manifest = manifest_of([spool.entry() for spool in spools], self.blocks.entry())
        signature = sign(manifest)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6, allowZip64=True) as zf:
            for spool in spools:
                zf.write(spool.path, arcname=spool.name)
            zf.writestr(MANIFEST, manifest)
            zf.writestr(SIGNATURE, signature)
            zf.writestr(PUBLIC_KEY, public_key_pem)
        return manifest
