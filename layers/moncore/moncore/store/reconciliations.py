"""Reconciliation records (append-only ReconciliationsTable) and a run's objects in the evidence bucket.

Records (docs/reconciliation.md "Runs", "Exceptions and adjustments"): every record is versioned by its sort key and a
change is the NEXT version, put with attribute_not_exists. Two writers that read the same version can never both
write the next one (the loser gets VersionTaken and re-reads), nothing is ever overwritten, and the table can be
append-only in IAM like the ledger. The current state of a record is its latest version (one Query, newest first).

    pk = run id    sk = RUN#<nnnn>                                the run's state after each step
                   sk = EXC#<attempt>#<exception id>#<nnnn>       an exception: open -> adjustment_proposed -> resolved
                   sk = ADJ#<adjustment id>#<nnnn>                an adjustment: proposed -> approved
    pk = _sandbox#statements#<tenant>#<date>   PLAN#<nnnn> / CALL#<nnnn>   the sandbox bank's own state

Objects: statements the bank delivered (statements/...), the run's frozen inputs and results, and its reports
(reconciliations/<tenant>/<date>/<run>/...) go to the Object Lock evidence bucket; each write answers its SHA-256
and version id, which the run records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError
from pynamodb.expressions.condition import Condition

from moncore.config import settings
from moncore.domain.audit import AuditEvent
from moncore.domain.errors import NotFound, ValidationFailed
from moncore.store import cursors
from moncore.store.audit import append_condition, audit_item
from moncore.store.models import ReconciliationItem
from moncore.store.transact import ConditionFailed, TxBuilder

RUN = "RUN#"
EXCEPTION = "EXC#"
ADJUSTMENT = "ADJ#"
_LAST = "~"  # sorts after every id character: the end of a prefix's range


class VersionTaken(Exception):
    """Another writer appended this version first: re-read the record and decide again."""


def versioned_sk(prefix: str, version: int) -> str:
    return f"{prefix}{version:04d}"


def exception_prefix(attempt: int, exception_id: str | None = None) -> str:
    return f"{EXCEPTION}{attempt:03d}#" + (f"{exception_id}#" if exception_id else "")


def adjustment_prefix(adjustment_id: str) -> str:
    return f"{ADJUSTMENT}{adjustment_id}#"


# ---------------------------------------------------------------- records
def append(*items: ReconciliationItem, audits: tuple[AuditEvent, ...] = ()) -> None:
    """Write the next versions of one or more records (with their audit events) atomically. VersionTaken when any of
    those versions exists already (nothing is written)."""
    tx = TxBuilder()
    for index, item in enumerate(items):
        tx.put(f"record:{index}", item, ReconciliationItem.pk.does_not_exist())
    for index, audit in enumerate(audits):
        tx.put(f"audit:{index}", audit_item(audit), append_condition())
    try:
        tx.execute()
    except ConditionFailed as failed:
        taken = [label for label in failed.labels if label.startswith("record:")]
        if taken:
            raise VersionTaken(", ".join(items[int(label.split(":")[1])].sk for label in taken)) from None
        raise


def put_new(item: ReconciliationItem) -> bool:
    """Write a first version unless it exists (a retried task writing the same record); True when written now."""
    try:
        item.save(condition=ReconciliationItem.pk.does_not_exist())
    except PutError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


def latest(pk: str, prefix: str) -> ReconciliationItem | None:
    """The latest version of the record whose versions share `prefix` (consistent read), or None."""
    query = ReconciliationItem.query(
        pk, ReconciliationItem.sk.startswith(prefix), scan_index_forward=False, limit=1, consistent_read=True
    )
    return next(iter(query), None)


def versions(pk: str, prefix: str) -> list[ReconciliationItem]:
    """Every version of the records under `prefix`, oldest first (a record's history)."""
    return list(ReconciliationItem.query(pk, ReconciliationItem.sk.startswith(prefix), consistent_read=True))


def latest_run(run_id: str) -> ReconciliationItem | None:
    return latest(run_id, RUN)


def latest_each(pk: str, prefix: str) -> list[ReconciliationItem]:
    """The latest version of every record under `prefix`, in id order."""
    current: dict[str, ReconciliationItem] = {}
    for item in versions(pk, prefix):
        current[item.sk.rsplit("#", 1)[0]] = item
    return list(current.values())


def exceptions_page(
    run_id: str, attempt: int, *, limit: int, cursor: str | None
) -> tuple[list[ReconciliationItem], str | None]:
    """The latest version of up to `limit` exceptions of the attempt, in id order, and the cursor of the next page.
    Versions of one exception are adjacent (same sk prefix), so the page is cut between exceptions, never inside one:
    the query is read lazily until one exception more than wanted shows up."""
    prefix = exception_prefix(attempt)
    if cursor:
        start = cursors.decode(cursor, names=("pk", "sk"), scope_name="pk", scope_value=run_id)["sk"]["S"]
        if not str(start).startswith(prefix):
            raise ValidationFailed(
                "cursor is not valid for this listing", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
            )
        condition: Condition = ReconciliationItem.sk.between(f"{start}{_LAST}", f"{prefix}{_LAST}")
    else:
        condition = ReconciliationItem.sk.startswith(prefix)
    found: dict[str, ReconciliationItem] = {}
    for item in ReconciliationItem.query(run_id, condition, consistent_read=True):
        record = item.sk.rsplit("#", 1)[0]
        if record not in found and len(found) == limit:
            last = next(reversed(found))
            return list(found.values()), cursors.encode({"pk": {"S": run_id}, "sk": {"S": last}})
        found[record] = item
    return list(found.values()), None


# ---------------------------------------------------------------- evidence objects
@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    version_id: str | None
    sha256: str
    size_bytes: int

    def record(self) -> dict[str, Any]:
        return {"key": self.key, "version_id": self.version_id, "sha256": self.sha256, "size_bytes": self.size_bytes}


@cache
def _s3() -> Any:
    return boto3.client("s3", region_name=settings().region)


def put_file(key: str, path: Path, content_type: str) -> StoredObject:
    """Store a local file under `key` in the evidence bucket (Object Lock: the bucket's default COMPLIANCE retention
    applies to the new version). Answers its SHA-256 (of the stored bytes) and version id."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    with path.open("rb") as handle:
        answer = _s3().put_object(
            Bucket=settings().evidence_bucket,
            Key=key,
            Body=handle,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",  # S3 checks the bytes it stores (and Object Lock requires a checksum)
        )
    return StoredObject(key, answer.get("VersionId"), digest.hexdigest(), size)


def put_bytes(key: str, data: bytes, content_type: str) -> StoredObject:
    answer = _s3().put_object(
        Bucket=settings().evidence_bucket, Key=key, Body=data, ContentType=content_type, ChecksumAlgorithm="SHA256"
    )
    return StoredObject(key, answer.get("VersionId"), hashlib.sha256(data).hexdigest(), len(data))


def open_object(key: str, version_id: str | None = None) -> tuple[IO[bytes], str | None]:
    """A streaming read of an evidence object (a version of it, when given) and the version read; NotFound when the
    key does not exist."""
    extra = {"VersionId": version_id} if version_id else {}
    try:
        answer = _s3().get_object(Bucket=settings().evidence_bucket, Key=key, **extra)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "NoSuchVersion", "404"}:
            raise NotFound(f"no object {key} in the evidence bucket") from None
        raise
    return answer["Body"], answer.get("VersionId")


def object_exists(key: str) -> bool:
    try:
        _s3().head_object(Bucket=settings().evidence_bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            return False
        raise
    return True
