"""Integration fixtures: DynamoDB Local + moto with template.yaml's resources, and an in-process API Gateway.

Each pytest(-xdist) worker starts its own DynamoDB Local on a free port, once per session, when a test first asks for
`local_backend` (directly or through `gateway`, `admin_key`, `call`, ...). The kernel reads table names and endpoints
from os.environ when its modules are imported, so import `moncore` and handlers inside tests or fixtures that depend
on `local_backend`, never at the top of a test module.

    def test_something(call, admin_key):
        response = call("POST", "/admin/v1/tenants", key=admin_key, json={...}, headers={"Idempotency-Key": "k1"})
        assert response.status == 201
        assert response.headers["x-correlation-id"]
        assert response.json()["id"]

Modules that use these fixtures should set `pytestmark = pytest.mark.xdist_group("integration")`.
"""

from __future__ import annotations

import json as jsonlib
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from infra.gateway import GatewayResponse, LocalGateway
from infra.local_stack import LocalBackend, create_admin_key, create_demo_tenant

# The authorizer cache is off so a revoked key or a role change is visible on the very next call; the tenant
# configuration cache too, so a capability changed through the admin API gates the very next partner call.
INTEGRATION_PARAMETERS = {
    "EnvironmentName": "sandbox",
    "AuthorizerCacheTtlSeconds": "0",
    "TenantConfigCacheSeconds": "0",
    "WebhookSecretCacheSeconds": "0",  # a rotated webhook secret applies to the very next delivery
    # Second, minimal adapters (open banking, screening) live in the tests only; this is how they reach the functions
    # (moncore/providers/plugins.py): configuration, no kernel change (test_open_banking.py, test_execution_plane.py).
    "ProviderPlugins": "tests.integration.open_banking_minimal,tests.integration.screening_minimal",
}


@pytest.fixture(scope="session")
def local_backend() -> Iterator[LocalBackend]:
    """DynamoDB Local + moto with every table/bucket/key/secret of template.yaml; os.environ points at them."""
    backend = LocalBackend(INTEGRATION_PARAMETERS).start()
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="session")
def gateway(local_backend: LocalBackend) -> Iterator[LocalGateway]:
    """The template's API, in-process (handle() takes a request, no sockets), authorizer cache TTL 0."""
    local_gateway = local_backend.gateway()
    local_gateway.access_log = False
    yield local_gateway
    local_gateway.close()  # stop the worker processes (Lambda containers)


@pytest.fixture(scope="session")
def admin_key(local_backend: LocalBackend) -> str:
    """An admin API key (role admin) issued directly by the kernel."""
    _, api_key = create_admin_key(name="integration-admin", role="admin")
    return api_key


class Caller:
    """call(method, path, key=None, json=None, headers=None, query=None, data=None) -> GatewayResponse.

    `json` is serialised with Content-Type application/json; `data` (bytes or str) is sent as-is, for malformed bodies.
    The response has .status, .headers (case-insensitive), .body (bytes), .text and .json().
    """

    def __init__(self, gateway: LocalGateway) -> None:
        self.gateway = gateway

    def __call__(
        self,
        method: str,
        path: str,
        key: str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str | list[str]] | None = None,
        data: bytes | str | None = None,
    ) -> GatewayResponse:
        request_headers = {"Host": "localhost", "User-Agent": "pytest"}
        body = data.encode() if isinstance(data, str) else data or b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            request_headers["Content-Type"] = "application/json"
        if key is not None:
            request_headers["Authorization"] = f"Bearer {key}"
        request_headers.update(headers or {})
        return self.gateway.handle(method, path, request_headers, body, query)


@pytest.fixture(scope="session")
def call(gateway: LocalGateway) -> Caller:
    """Stateless, so session-scoped: module- and session-scoped fixtures may use it too."""
    return Caller(gateway)


@pytest.fixture(scope="session")
def demo_tenant(gateway: LocalGateway, admin_key: str) -> tuple[str, str]:
    """(tenant id, tenant API key) of a tenant created through the admin API, like the local stack's demo tenant."""
    caller = Caller(gateway)

    def send(method: str, path: str, api_key: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        response = caller(method, path, key=api_key, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        return response.status, response.json()

    return create_demo_tenant(send, admin_key)
