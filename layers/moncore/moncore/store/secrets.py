"""Secrets Manager access (the API key pepper). Fetched once per process: secrets do not change under a running
container; rotating the pepper means issuing new keys anyway."""

from __future__ import annotations

from functools import cache

import boto3

from moncore.config import settings


@cache
def secret_bytes(secret_id: str) -> bytes:
    client = boto3.client("secretsmanager", region_name=settings().region)
    value = client.get_secret_value(SecretId=secret_id)
    text = value.get("SecretString")
    return text.encode() if text is not None else bytes(value["SecretBinary"])
