"""KMS asymmetric signing (ECC_NIST_P256, ECDSA_SHA_256) of evidence: settlement records, reports, manifests.

The RAW message is signed (moto does not implement MessageType=DIGEST; KMS hashes RAW messages itself, up to 4 KiB).
Larger documents are signed through their SHA-256 hex text, which the verifier recomputes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3

from moncore.config import settings

ALGORITHM = "ECDSA_SHA_256"
_MAX_RAW_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Signature:
    key_id: str
    algorithm: str
    signature_b64: str

    def record(self) -> dict[str, str]:
        """As documents carry it (settlements, seals, reconciliation runs)."""
        return {"key_id": self.key_id, "algorithm": self.algorithm, "value_b64": self.signature_b64}


@cache
def _kms() -> Any:
    return boto3.client("kms", region_name=settings().region)


def sign(message: bytes) -> Signature:
    if len(message) > _MAX_RAW_BYTES:
        raise ValueError(f"sign at most {_MAX_RAW_BYTES} bytes raw; sign the document's SHA-256 instead")
    key_id = settings().signing_key_id
    answer = _kms().sign(KeyId=key_id, Message=message, MessageType="RAW", SigningAlgorithm=ALGORITHM)
    return Signature(str(answer["KeyId"]), ALGORITHM, base64.b64encode(answer["Signature"]).decode())


def public_key_der(key_id: str | None = None) -> bytes:
    """The public key (SubjectPublicKeyInfo DER) of `key_id` (a key id or ARN as a signature names it; default: the
    signing key), for verifiers outside MonCore and for the chain-integrity job."""
    return bytes(_kms().get_public_key(KeyId=key_id or settings().signing_key_id)["PublicKey"])


def signing_public_key() -> tuple[str, bytes]:
    """(key ARN, public key DER) of the signing key: what a document names before it is signed (an evidence bundle's
    manifest names its key), and what ships with it."""
    key_id = settings().signing_key_id
    arn = _kms().describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]  # what Sign answers as KeyId (an alias/id may not)
    return str(arn), bytes(_kms().get_public_key(KeyId=key_id)["PublicKey"])
