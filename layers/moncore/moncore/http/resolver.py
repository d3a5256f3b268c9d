"""The resolver every HTTP function uses: validation on, problem+json for every error, correlation ids everywhere.

Handlers stay thin: parse (powertools + pydantic), call one kernel service, return. Everything about HTTP errors, the
X-Correlation-Id header, body-size limits and the caller identity lives here, in one place.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext

from moncore.domain.context import Caller, RequestIdentity, Result
from moncore.domain.errors import DomainError, Forbidden, InvariantViolation, Unauthorized
from moncore.http import idempotency
from moncore.http.problems import PROBLEM_JSON, problem_body, problem_response, validation_errors

CORRELATION_HEADER = "X-Correlation-Id"
MAX_BODY_BYTES = 64 * 1024  # no MonCore request needs more; bigger bodies are refused before parsing
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # safe to echo in a header and a log line


def make_app(logger: Logger) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(DomainError)
    def _domain(error: DomainError) -> Response[str]:
        if error.status >= 500:
            logger.warning("domain error", code=error.code, detail=error.detail)
        return problem_response(problem_body(error.status, error.code, error.title, error.detail, error.errors))

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[str]:
        errors = validation_errors(list(error.errors()))
        return problem_response(
            problem_body(422, "validation_error", "Validation Error", "The request is not valid; see errors.", errors)
        )

    @app.not_found
    def _not_found(_: Exception) -> Response[str]:
        return problem_response(problem_body(404, "not_found", "Not Found", "No such route."))

    @app.exception_handler(InvariantViolation)
    def _invariant(error: InvariantViolation) -> Response[str]:
        logger.critical("money invariant violated; nothing was answered as success", error=str(error))
        return problem_response(
            problem_body(
                500, "internal_error", "Internal Error", "The request was refused by an internal consistency check."
            )
        )

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return problem_response(
            problem_body(
                500,
                "internal_error",
                "Internal Error",
                "Unexpected error; nothing was posted. Retry with the same Idempotency-Key.",
            )
        )

    return app


def handle(
    app: APIGatewayRestResolver,
    logger: Logger,
    event: dict[str, Any],
    context: LambdaContext,
    *,
    json_body: bool = True,
) -> dict[str, Any]:
    """Lambda entry shared by HTTP functions: correlation id in, size check, resolve, correlation id out.
    `json_body=False` (webhooks) hands any body to the route unparsed: a provider's delivery is verified and stored
    as received, even when it is not JSON."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    sent = headers.get(CORRELATION_HEADER.lower())
    correlation_id = sent if isinstance(sent, str) and _CORRELATION_RE.match(sent) else str(uuid.uuid4())
    logger.thread_safe_append_keys(correlation_id=correlation_id)
    try:
        refused = _refuse_body(event.get("body") or "", bool(event.get("isBase64Encoded")), json_body=json_body)
        if refused is not None:
            result: dict[str, Any] = {
                "statusCode": refused["status"],
                "headers": {"Content-Type": PROBLEM_JSON},
                "body": json.dumps(refused),
                "isBase64Encoded": False,
            }
        else:
            app.append_context(correlation_id=correlation_id)
            result = app.resolve(event, context)
        result.setdefault("headers", {})
        result["headers"][CORRELATION_HEADER] = correlation_id
        if result.get("multiValueHeaders"):
            result["multiValueHeaders"].pop(CORRELATION_HEADER, None)
        return result
    finally:
        logger.thread_safe_remove_keys(["correlation_id"])


class _DuplicateName(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: an object naming a member twice is refused. Parsers disagree on which one wins (Python's
    the last, others the first), so a proxy, a log or the partner's own code could read another amount than the
    one we would execute."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise _DuplicateName(name)
        seen.add(name)
    return dict(pairs)


def _not_json(constant: str) -> Any:
    """parse_constant: NaN and +-Infinity are Python's extensions, not JSON (RFC 8259); a body carrying one is not
    JSON, even where the route reads no body."""
    raise ValueError(f"{constant} is not a JSON value")


def _refuse_body(body: str, base64_encoded: bool, *, json_body: bool = True) -> dict[str, Any] | None:
    """Problem for a body we will not hand to the resolver: too large, not UTF-8, not JSON (NaN and Infinity
    included), nested so deep that a parser would blow its stack, or naming a member twice (checked here so such
    input is a 4xx, never a 5xx, and never read two ways)."""
    if len(body) > MAX_BODY_BYTES * (4 / 3 if base64_encoded else 1):
        return problem_body(413, "payload_too_large", "Payload Too Large", f"The body exceeds {MAX_BODY_BYTES} bytes.")
    if not body or not json_body:
        return None
    try:
        text = base64.b64decode(body, validate=True).decode("utf-8") if base64_encoded else body
        json.loads(text, object_pairs_hook=_unique_names, parse_constant=_not_json)
    except _DuplicateName as duplicate:
        return problem_body(
            422,
            "validation_error",
            "Validation Error",
            f"The body names the member {duplicate.name!r} more than once.",
            [{"loc": ["body", duplicate.name], "msg": "duplicate member name", "type": "json_duplicate_key"}],
        )
    except (ValueError, RecursionError, UnicodeDecodeError, binascii.Error):
        return problem_body(
            422,
            "validation_error",
            "Validation Error",
            "The body is not valid UTF-8 JSON.",
            [{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}],
        )
    return None


def caller(app: APIGatewayRestResolver) -> Caller:
    """Identity from the authorizer context: the only source of the tenant id (invariant 10)."""
    authorizer = app.current_event.request_context.authorizer.raw_event or {}
    key_id = authorizer.get("key_id")
    kind = authorizer.get("kind")
    if not key_id or kind not in {"tenant", "admin"}:
        raise Unauthorized("no authenticated caller")
    tenant_id = authorizer.get("tenant_id") if kind == "tenant" else None
    return Caller(
        tenant_id=tenant_id or None,
        actor=f"key:{key_id}",
        role=str(authorizer.get("role", "")),
        correlation_id=str(app.context.get("correlation_id", "")),
    )


def tenant_caller(app: APIGatewayRestResolver) -> Caller:
    who = caller(app)
    if who.tenant_id is None:
        raise Unauthorized("a tenant API key is required")
    return who


def admin_caller(app: APIGatewayRestResolver, *roles: str) -> Caller:
    who = caller(app)
    if who.tenant_id is not None:
        raise Unauthorized("an admin API key is required")
    if roles and who.role not in roles:
        raise Forbidden(f"this action needs one of the roles: {', '.join(roles)}")
    return who


def idempotent(
    app: APIGatewayRestResolver, who: Caller, operation: Callable[[RequestIdentity], Result], *, status: int = 201
) -> Response[str]:
    """Run a creating POST exactly once per (tenant, Idempotency-Key); see moncore.http.idempotency."""
    event = app.current_event
    # The concrete path, not the resource template: the same key on /v1/transactions/A/capture and .../B/capture is
    # two different requests, never a replay of the first.
    route = f"{event.http_method} {event.path}"
    body = event.json_body if event.body else {}
    request = idempotency.request_identity(_header(event, "idempotency-key"), route, body)
    scope = who.tenant_id or "_admin"
    return idempotency.run(scope, request, lambda: operation(request), status=status)


def _header(event: Any, name: str) -> str | None:
    for key, value in (event.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None
