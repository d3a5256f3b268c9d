"""Lambda REQUEST authorizer logic for tenant and admin keys.

API Gateway caches the answer per Authorization header for the TTL, so the policy must cover every route the key may
call (not just the one being requested): tenant keys get `*/v1/*`, admin keys `*/admin/v1/*`.
- no, malformed, unknown or revoked key -> raise "Unauthorized" -> API Gateway answers 401 (UNAUTHORIZED)
- a valid key of the other kind -> Deny policy -> 403 (gateway response ACCESS_DENIED)
"""

from __future__ import annotations

from typing import Any

from moncore.domain.errors import Unauthorized
from moncore.tenancy.service import TenancyService

_SCOPE = {"tenant": "v1/*", "admin": "admin/v1/*"}


class AuthorizerUnauthorized(Exception):
    """Raised with the exact message "Unauthorized", which API Gateway turns into a 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def authorize(event: dict[str, Any], *, kind: str, tenancy: TenancyService | None = None) -> dict[str, Any]:
    api_key = _bearer(event)
    if api_key is None:
        raise AuthorizerUnauthorized()
    service = tenancy or TenancyService()
    other = "admin" if kind == "tenant" else "tenant"
    try:
        principal = service.authenticate(api_key, kind=kind)
    except Unauthorized:
        try:
            principal = service.authenticate(api_key, kind=other)
        except Unauthorized:
            raise AuthorizerUnauthorized() from None
        return _policy(event, principal.key_id, "Deny", kind, {})
    context = {
        "key_id": principal.key_id,
        "kind": principal.kind,
        "role": principal.role,
        "tenant_id": principal.tenant_id or "",
    }
    return _policy(event, principal.key_id, "Allow", kind, context)


def _bearer(event: dict[str, Any]) -> str | None:
    for name, value in (event.get("headers") or {}).items():
        if str(name).lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _policy(
    event: dict[str, Any], principal_id: str, effect: str, kind: str, context: dict[str, str]
) -> dict[str, Any]:
    # methodArn: arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{METHOD}/{path}
    arn_prefix, _, rest = str(event.get("methodArn", "")).partition("/")
    stage = rest.split("/", 1)[0] or "*"
    resource = f"{arn_prefix}/{stage}/*/{_SCOPE[kind]}"
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }
