"""The evidence bucket (S3 Object Lock, default COMPLIANCE retention from template.yaml): write-once copies of seals,
and later of evidence bundles. The only S3 code of the kernel.

Every object is written with `If-None-Match: *`, so a key is created once and never replaced by MonCore itself (a
second writer gets PreconditionFailed). The lock protects each stored version: deleting or shortening it is refused
until its retention ends; an outside PutObject without the condition could only add a newer version, never change or
remove the locked one. A SHA-256 checksum goes with every PUT (S3 requires a checksum or Content-MD5 for objects under
Object Lock retention) and S3 checks it on arrival.
"""

from __future__ import annotations

import base64
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from moncore.config import settings


class EvidenceExists(Exception):
    """The key already holds an object: evidence is never overwritten."""


@cache
def _s3() -> Any:
    return boto3.client("s3", region_name=settings().region)


def put_once(key: str, body: bytes, *, content_type: str = "application/json") -> str:
    """Create `key` with `body` under the bucket's default retention; returns the version id. Raises EvidenceExists
    when the key is taken."""
    try:
        answer = _s3().put_object(
            Bucket=settings().evidence_bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
            IfNoneMatch="*",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise EvidenceExists(key) from None
        raise
    return str(answer.get("VersionId") or "")


def put_file_once(
    key: str,
    path: Path,
    *,
    sha256_hex: str,
    retain_until: datetime,
    content_type: str,
    filename: str,
) -> str:
    """Create `key` from a file (streamed from disk, never held in memory) with COMPLIANCE retention until
    `retain_until` set on the object itself (not only the bucket default), and the SHA-256 S3 checks on arrival; the
    download is named `filename`. Returns the version id; EvidenceExists when the key is taken. PutObject takes up to
    5 GB."""
    try:
        with path.open("rb") as body:
            answer = _s3().put_object(
                Bucket=settings().evidence_bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ContentDisposition=f'attachment; filename="{filename}"',
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256_hex)).decode(),
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until,
                IfNoneMatch="*",
            )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise EvidenceExists(key) from None
        raise
    return str(answer.get("VersionId") or "")


@cache
def _presigner() -> Any:
    # SigV4 query signing (the default for new regions, explicit here: SigV2 URLs are refused by most of them).
    return boto3.client("s3", region_name=settings().region, config=Config(signature_version="s3v4"))


def download_url(key: str, expires_s: int) -> str:
    """A presigned GET of `key` any HTTP client can fetch until it expires (or the signing credentials do: a Lambda
    role's session lasts at least as long as the function runs, usually hours)."""
    return str(
        _presigner().generate_presigned_url(
            "get_object", Params={"Bucket": settings().evidence_bucket, "Key": key}, ExpiresIn=expires_s
        )
    )


def exists(key: str) -> bool:
    try:
        _s3().head_object(Bucket=settings().evidence_bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return False
        raise
    return True


def read(key: str) -> bytes | None:
    """The current object at `key`, or None when there is none."""
    try:
        answer = _s3().get_object(Bucket=settings().evidence_bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return bytes(answer["Body"].read())
