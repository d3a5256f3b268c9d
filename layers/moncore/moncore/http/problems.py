"""All error -> HTTP mapping in one place: RFC 9457 problem+json bodies for every failure."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

from moncore.domain.errors import DomainError

PROBLEM_JSON = "application/problem+json"


def problem_body(
    status: int, code: str, title: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    return body


def domain_problem(error: DomainError) -> dict[str, Any]:
    return problem_body(error.status, error.code, error.title, error.detail, error.errors)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=int(body["status"]),
        content_type=PROBLEM_JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=headers or {},
    )


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    """Pydantic/powertools errors reduced to {loc, msg, type}; inputs are not echoed (they may be huge or sensitive)."""
    out = []
    for err in raw[:50]:
        loc = [str(part) for part in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "invalid")), "type": str(err.get("type", "invalid"))})
    return out
