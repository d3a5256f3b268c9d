"""Secrets Manager access. The API key pepper is fetched once per process: secrets do not change under a running
container, and rotating the pepper means issuing new keys anyway. Webhook signing secrets are re-read after a
configurable age (stack parameter WebhookSecretCacheSeconds), so a rotation reaches every container in that time."""

from __future__ import annotations

import json
import threading
import time
from functools import cache
from typing import Any

import boto3

from moncore.config import settings


@cache
def secret_bytes(secret_id: str) -> bytes:
    return _fetch(secret_id)


_json_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_json_lock = threading.Lock()


def secret_json(secret_id: str, *, max_age_s: float) -> dict[str, Any]:
    """A JSON-object secret, re-read once the cached value is older than `max_age_s` (0: every call)."""
    now = time.monotonic()
    with _json_lock:
        hit = _json_cache.get(secret_id)
    if hit is not None and now - hit[0] < max_age_s:
        return hit[1]
    value = json.loads(_fetch(secret_id))
    if not isinstance(value, dict):
        raise ValueError(f"secret {secret_id} must hold a JSON object")
    with _json_lock:
        _json_cache[secret_id] = (now, value)
    return value


def _fetch(secret_id: str) -> bytes:
    client = boto3.client("secretsmanager", region_name=settings().region)
    value = client.get_secret_value(SecretId=secret_id)
    text = value.get("SecretString")
    return text.encode() if text is not None else bytes(value["SecretBinary"])
