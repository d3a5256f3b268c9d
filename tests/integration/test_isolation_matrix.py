"""Isolation matrix (DESIGN.md invariant 10, API.md "Conventions: Auth"): every route API Gateway serves x every kind
of caller, one request per cell, with the answer each must get. Generated from template.yaml's routes and the
resolvers' OpenAPI documents (tests/integration/api_surface.py), so a new endpoint is in the matrix as soon as it
exists, and fails here while its parameters cannot be filled with real resources.

Columns (tenant A owns every resource in the requests; tenant B is its twin with the same capabilities):
  other_tenant  /v1: B's key. A request naming a resource of A (path or body) is 404 not_found, as if it did not
                exist; one naming none is B's own business. /admin: the admin key with B's tenant id in place of A's
                (path, query or body), the other ids still A's: 404 likewise. Either way B's answer never carries an
                identifier of A that B did not send.
  revoked       a revoked key of A: 401 unauthorized.
  no_key        no Authorization header: 401 unauthorized (API Gateway, without calling the authorizer).
  other_plane   the admin key on /v1, a tenant key on /admin: 403 forbidden (the authorizer's Deny policy).
  own           A's key on /v1, the admin key (role admin) on /admin: reaches the handler and is neither 401/403
                nor 404 (every id exists) nor 5xx. Run last per route: it may consume the resource (a capture).
Public routes (health, OpenAPI documents) answer 200 to every column; /webhooks/{provider} ignores API keys: every
column gets what an unsigned delivery gets, 401 invalid_signature.
Every 4xx is problem+json with a code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest

from infra.gateway import Route
from tests.integration.api_surface import (
    ADMIN_PLANE,
    PUBLIC,
    RESOURCES,
    ROUTES,
    TENANT_PLANE,
    WEBHOOK_PREFIX,
    Request,
    World,
    plane,
    resolver_operations,
)
from tests.integration.helpers import idem

pytestmark = pytest.mark.xdist_group("integration")

COLUMNS = ("other_tenant", "revoked", "no_key", "other_plane", "own")
CELLS = [(route, column) for route in ROUTES for column in COLUMNS]


@dataclass(frozen=True)
class Surface:
    world: World
    operations: dict[tuple[str, str], dict[str, Any]]

    def request(self, route: Route) -> Request:
        document = self.operations.get((route.method, route.resource))
        assert document is not None, f"{route.method} {route.resource} is in template.yaml but no resolver has it"
        return self.world.request(document, route.method, route.resource)


@pytest.fixture(scope="module")
def surface(call: Any, gateway: Any, admin_key: str) -> Surface:
    from infra.local_stack import create_admin_key

    _, second_admin = create_admin_key(name="matrix-second-admin", role="admin")
    return Surface(World(call, admin_key, second_admin).build("Matrix"), resolver_operations(gateway))


def test_the_template_serves_exactly_the_resolvers_routes(surface: Surface) -> None:
    """A route only in a resolver is unreachable on AWS; one only in the template answers 404 from the function."""
    template = {(route.method, route.resource) for route in ROUTES}
    resolvers = set(surface.operations)
    assert template - resolvers == set(), "in template.yaml, in no resolver"
    assert resolvers - template == set(), "in a resolver, not in template.yaml"


@pytest.mark.parametrize(("route", "column"), CELLS, ids=[f"{c}:{r.method} {r.resource}" for r, c in CELLS])
def test_cell(call: Any, surface: Surface, route: Route, column: str) -> None:
    world = surface.world
    request = surface.request(route)
    where = plane(route)
    if where == PUBLIC:
        key = {"own": world.a.key, "other_tenant": world.b.key, "revoked": world.revoked_key}.get(column)
        got = send(call, request, world.admin_key if column == "other_plane" else key)
        if route.resource.startswith(WEBHOOK_PREFIX):
            assert_problem(got, 401, "invalid_signature")
        else:
            assert got.status == 200, (got.status, got.text[:300])
        return
    own_key = world.a.key if where == TENANT_PLANE else world.admin_key
    if column == "own":
        assert_reached(send(call, request, own_key), exists=True)
    elif column == "revoked":
        assert_problem(send(call, request, world.revoked_key), 401, "unauthorized")
    elif column == "no_key":
        assert_problem(send(call, request, None), 401, "unauthorized")
    elif column == "other_plane":
        assert_problem(send(call, request, world.admin_key if where == TENANT_PLANE else world.a.key), 403, "forbidden")
    elif where == TENANT_PLANE:
        assert_isolated(send(call, request, world.b.key), request, world)
    else:
        assert where == ADMIN_PLANE
        foreign = with_tenant(request, world.a.id, world.b.id)
        if foreign == request:  # no tenant id anywhere: admin routes act across tenants, nothing to isolate
            assert_reached(send(call, request, world.admin_key), exists=True)
        else:
            assert_isolated(send(call, foreign, world.admin_key), foreign, world)


# ---------------------------------------------------------------- helpers


def send(call: Any, request: Request, key: str | None) -> Any:
    headers = idem() if request.method in ("POST", "PUT", "PATCH") else {}
    return call(request.method, request.url, key=key, json=request.body, headers=headers, query=request.query or None)


def assert_problem(got: Any, status: int | None = None, code: str | None = None) -> None:
    assert got.headers.get("Content-Type") == "application/problem+json", (got.status, got.headers, got.text[:300])
    problem = got.json()
    assert isinstance(problem.get("code"), str) and problem.get("status") == got.status and problem.get("title")
    if status is not None:
        assert (got.status, problem["code"]) == (status, code), problem


def assert_reached(got: Any, *, exists: bool) -> None:
    """The handler answered: no 5xx, no 401/403, errors as problem+json; `exists`: the ids are real, so no 404."""
    assert got.status < 500, (got.status, got.text[:500])
    assert got.status not in (401, 403), got.text[:500]
    if got.status >= 400:
        assert_problem(got)
        assert got.json().get("detail") != "No such route.", "the route is in the template but not in its function"
    if exists:
        assert got.status != 404, ("every id in the request exists", got.text[:500])


def assert_isolated(got: Any, request: Request, world: World) -> None:
    """B's answer: 404 not_found when the request names any resource of A, else B's own business; never A's ids."""
    names_a = sorted(name for name, _ in request.names() if name in RESOURCES and RESOURCES[name].tenant_owned)
    names_a = [name for name in names_a if name != "tenant_id"]  # the tenant id is B's here
    if names_a:
        assert_problem(got, 404, "not_found")
    else:
        assert_reached(got, exists=False)
    sent = request.url + json.dumps(request.query) + json.dumps(request.body)
    leaked = sorted(i for i in world.a_ids() if i in got.text and i not in sent)
    assert not leaked, (f"the answer to tenant B carries A's identifiers {leaked}", got.text[:500])


def with_tenant(request: Request, old: str, new: str) -> Request:
    def swap(values: dict[str, Any]) -> dict[str, Any]:
        return {k: (new if k == "tenant_id" and v == old else v) for k, v in values.items()}

    body = swap(request.body) if isinstance(request.body, dict) else request.body
    return replace(request, params=swap(request.params), query=swap(request.query), body=body)
