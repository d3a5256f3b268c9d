"""Exactly-once execution of creating POSTs (API.md conventions, DESIGN.md invariant 4).

- The key is claimed with one conditional put before anything executes.
- Same key + same request -> the stored status and body, with `Idempotency-Replayed: true`.
- Same key + another request -> 409 idempotency_key_reused naming the differing fields (per-field hashes are kept).
- Final outcomes (success and non-retryable domain errors) are stored; retryable ones release the key.
- Behind all this, ids derived from (tenant, key) make the ledger itself refuse a second posting.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response

from moncore.config import settings
from moncore.domain.canonical import sha256_hex
from moncore.domain.clock import now_rfc3339
from moncore.domain.context import RequestIdentity, Result
from moncore.domain.errors import DomainError, IdempotencyInProgress, IdempotencyKeyReused, ValidationFailed
from moncore.http.problems import PROBLEM_JSON, domain_problem, problem_response
from moncore.store import idempotency as store

REPLAYED_HEADER = "Idempotency-Replayed"
# Longer than the function timeout (29 s): a lock only lapses once its holder cannot still be running.
_LOCK_S = 60


def request_identity(key: str | None, route: str, body: Any) -> RequestIdentity:
    if key is None or not 1 <= len(key) <= 255 or not key.isprintable():
        raise ValidationFailed(
            "Idempotency-Key header is required (1-255 printable characters)",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "required, 1-255 printable characters"}],
        )
    fields = body if isinstance(body, dict) else {"body": body}
    fingerprint = {"_route": sha256_hex(route)} | {name: sha256_hex(value) for name, value in fields.items()}
    return RequestIdentity(
        idempotency_key=key, request_hash=sha256_hex({"route": route, "body": body}), fingerprint=fingerprint
    )


def run(tenant_id: str, request: RequestIdentity, operation: Callable[[], Result], *, status: int) -> Response[str]:
    token = secrets.token_hex(16)
    now_s = int(time.time())
    held = store.claim(
        tenant_id,
        request.idempotency_key,
        fingerprint=request.fingerprint,
        request_hash=request.request_hash,
        lock_token=token,
        now_s=now_s,
        lock_s=_LOCK_S,
        ttl_s=settings().idempotency_ttl_seconds,
        created_at=now_rfc3339(),
    )
    if held is not None:
        return _answer_held(held, request)
    try:
        result = operation()
    except DomainError as error:
        if error.retryable:
            store.release(tenant_id, request.idempotency_key, lock_token=token)
        else:
            store.complete(
                tenant_id,
                request.idempotency_key,
                lock_token=token,
                status=error.status,
                body=json.dumps(domain_problem(error), separators=(",", ":")),
            )
        raise
    except Exception:
        store.release(tenant_id, request.idempotency_key, lock_token=token)
        raise
    body = json.dumps(result.body, separators=(",", ":"))
    stored = body if result.replay_body is None else json.dumps(result.replay_body, separators=(",", ":"))
    store.complete(tenant_id, request.idempotency_key, lock_token=token, status=status, body=stored)
    headers = {REPLAYED_HEADER: "true"} if result.replayed else {}
    return Response(status_code=status, content_type="application/json", body=body, headers=headers)


def _answer_held(held: store.Existing, request: RequestIdentity) -> Response[str]:
    if held.request_hash != request.request_hash:
        differing = sorted(
            k
            for k in set(held.fingerprint) | set(request.fingerprint)
            if held.fingerprint.get(k) != request.fingerprint.get(k)
        )
        named = ["(endpoint)" if k == "_route" else k for k in differing]
        raise IdempotencyKeyReused(
            f"Idempotency-Key was used with a different request; differing fields: {', '.join(named)}",
            errors=[
                {"loc": ["body", k] if k != "_route" else ["path"], "msg": "differs from the original request"}
                for k in differing
            ],
        )
    if held.status != "COMPLETED" or held.response_status is None or held.response_body is None:
        raise IdempotencyInProgress("a request with this Idempotency-Key is still executing; retry shortly")
    if held.response_status >= 400:
        return problem_response(json.loads(held.response_body), headers={REPLAYED_HEADER: "true"})
    return Response(
        status_code=held.response_status,
        content_type="application/json",
        body=held.response_body,
        headers={REPLAYED_HEADER: "true"},
    )


__all__ = ["PROBLEM_JSON", "REPLAYED_HEADER", "request_identity", "run"]
