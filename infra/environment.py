"""Function environment variables, computed the way Lambda computes them from template.yaml.

Lambda gives each function Globals.Function.Environment.Variables merged with its own Environment.Variables; the
local stack adds endpoints and fake credentials so the same boto3/PynamoDB code reaches DynamoDB Local and moto.

The shared variables (the Globals ones plus the local endpoints) go into this process's os.environ once, before any
`moncore` import, because fixtures and the demo seed call the kernel in-process. Each function's handlers run in
worker processes (infra/workers.py) that get os.environ plus the function's own variables (POWERTOOLS_SERVICE_NAME,
...), i.e. exactly the environment Lambda would give that function.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from infra import LOCAL_REGION
from infra.resources import Endpoints
from infra.template import ResolveContext, resolve


def _variables(section: Mapping[str, Any] | None, ctx: ResolveContext) -> dict[str, str]:
    variables = ((section or {}).get("Environment") or {}).get("Variables") or {}
    return {name: _as_env(resolve(value, ctx)) for name, value in variables.items()}


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def global_variables(template: Mapping[str, Any], ctx: ResolveContext) -> dict[str, str]:
    """Globals.Function.Environment.Variables, resolved."""
    return _variables((template.get("Globals") or {}).get("Function"), ctx)


def function_variables(template: Mapping[str, Any], logical_id: str, ctx: ResolveContext) -> dict[str, str]:
    """The function's own Environment.Variables, resolved (without the Globals ones)."""
    resource = template["Resources"][logical_id]
    return _variables(resource.get("Properties"), ctx)


def function_environment(template: Mapping[str, Any], logical_id: str, ctx: ResolveContext) -> dict[str, str]:
    """What Lambda would put in the function's environment: Globals first, the function's own variables win."""
    return {**global_variables(template, ctx), **function_variables(template, logical_id, ctx)}


def local_aws_variables(endpoints: Endpoints) -> dict[str, str]:
    """Endpoints, region and fake credentials that point boto3 (and PynamoDB through botocore) at the local stack."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoints.dynamodb,
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": endpoints.dynamodb,
        "AWS_ENDPOINT_URL": endpoints.aws,
        "AWS_REGION": endpoints.region or LOCAL_REGION,
        "AWS_DEFAULT_REGION": endpoints.region or LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        # botocore 1.44 builds account-based endpoints for DynamoDB (Streams) unless this is off (DESIGN.md s9).
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "AWS_EC2_METADATA_DISABLED": "true",
        # No X-Ray daemon locally; Tracer would only log send failures. Tracing is not behaviour.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def shared_environment(template: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints) -> dict[str, str]:
    """The variables every local function shares: template Globals + local endpoints/credentials."""
    return {**global_variables(template, ctx), **local_aws_variables(endpoints)}


def apply_environment(variables: Mapping[str, str]) -> None:
    """Put variables into os.environ (must happen before `moncore` or any handler is imported).

    A profile or real credentials in the developer's shell must never reach the local stack, so they are removed.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(variables)


def forget_imported_kernel(package: str = "moncore") -> list[str]:
    """Drop already imported kernel modules so the next import reads the environment just applied.

    The kernel binds settings when its modules load (store/models.py reads table names at import). In a test process
    other suites (unit tests) may have imported it at collection time, before the local stack existed, with default
    names. Forgetting those modules makes handlers and fixtures import a kernel bound to the local stack; modules that
    already hold the old objects keep them (unit tests that imported at top level are unaffected).
    """
    stale = [name for name in sys.modules if name == package or name.startswith(package + ".")]
    for name in stale:
        del sys.modules[name]
    return stale
