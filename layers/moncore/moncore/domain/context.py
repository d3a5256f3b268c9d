"""Who is calling: built by the HTTP layer from the authorizer context, the only source of the tenant id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Caller:
    tenant_id: str | None  # None for admins
    actor: str  # "key:<key_id>" of the calling API key, or "system:<job>"
    role: str  # "tenant" or an admin role: viewer | compliance_officer | operator | admin
    correlation_id: str

    def require_tenant(self) -> str:
        if not self.tenant_id:
            raise PermissionError("a tenant caller is required")
        return self.tenant_id


@dataclass(frozen=True, slots=True)
class RequestIdentity:
    """What identifies one creating request: ids are derived from (tenant, idempotency_key); the hash and the per-field
    fingerprint tell a replay from a different request reusing the key."""

    idempotency_key: str
    request_hash: str
    fingerprint: dict[str, str]


@dataclass(frozen=True, slots=True)
class Result:
    """A creating operation's answer. `replay_body` is what a replay answers when it must differ from the first
    answer (an API key secret is shown once and never stored)."""

    body: dict[str, Any]
    replayed: bool = False
    replay_body: dict[str, Any] | None = None
