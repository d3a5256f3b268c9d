"""Step Functions on the local stack: template.yaml's state machines run on moto's ASL engine, and their Lambda tasks
run in the real handlers (DESIGN.md section 9).

- `create_state_machines` reads every `AWS::Serverless::StateMachine` (DefinitionUri + DefinitionSubstitutions, as SAM
  deploys it), substitutes `${...}` with the resolved values (function ARNs, table names) and creates it in moto under
  its template name; the ARN is recorded in the resolve context, so `Ref` to the state machine resolves.
- `LambdaDispatch` replaces moto's Lambda invoke (moto without Docker only echoes the input) with a call to the
  function's worker-process containers (infra/gateway.py FunctionPool: the function's own Lambda environment, one
  request per container). A handler that raises answers like Lambda: `X-Amz-Function-Error: Unhandled` and
  `{"errorType": <exception class>, "errorMessage": ...}`, so the ASL's Retry and Catch match on the class name.

moto runs executions in its own threads; waits and retry intervals sleep for real. Executions need a `name`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.gateway import FUNCTION_TYPE, FunctionPool, function_spec
from infra.resources import Endpoints
from infra.template import ResolveContext, resolve, resources_of_type
from infra.workers import FunctionError

log = logging.getLogger("infra.stepfunctions")

STATE_MACHINE_TYPE = "AWS::Serverless::StateMachine"
_LOCAL_ROLE = "arn:aws:iam::123456789012:role/moncore-local-states"


def state_machine_definition(properties: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """The ASL of a state machine resource with its DefinitionSubstitutions applied (values already resolved)."""
    uri = properties.get("DefinitionUri")
    if isinstance(uri, str):
        text = (base_dir / uri).read_text(encoding="utf-8")
    elif "Definition" in properties:
        text = json.dumps(properties["Definition"])
    else:
        raise ValueError("a state machine needs DefinitionUri (a file) or Definition")
    for name, value in (properties.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + name + "}", str(value))
    if "${" in text:
        start = text.index("${")
        raise ValueError(f"unsubstituted {text[start : text.index('}', start) + 1]} in {uri}")
    definition: dict[str, Any] = json.loads(text)
    return definition


def create_state_machines(
    template: Mapping[str, Any], ctx: ResolveContext, endpoints: Endpoints, base_dir: Path
) -> dict[str, str]:
    """Create (or update) every state machine in moto; returns {logical id: ARN} and records them in `ctx`."""
    client = endpoints.client("stepfunctions")
    existing = {m["name"]: m["stateMachineArn"] for m in client.list_state_machines()["stateMachines"]}
    created: dict[str, str] = {}
    for logical_id, resource in resources_of_type(template, STATE_MACHINE_TYPE).items():
        properties = resolve(resource.get("Properties") or {}, ctx)
        name = str(properties.get("Name") or logical_id)
        definition = json.dumps(state_machine_definition(properties, base_dir))
        if name in existing:
            arn = existing[name]
            client.update_state_machine(stateMachineArn=arn, definition=definition)
        else:
            arn = client.create_state_machine(name=name, definition=definition, roleArn=_LOCAL_ROLE)["stateMachineArn"]
        ctx.refs[logical_id] = arn
        ctx.attributes.setdefault(logical_id, {}).update({"Arn": arn, "Name": name})
        created[logical_id] = arn
    return created


def start_execution(state_machine_arn: str, payload: Any, name: str | None = None) -> dict[str, str]:
    """Start an execution (as EventBridge Scheduler does: not awaited); {"executionArn", "name"}."""
    import boto3  # noqa: PLC0415

    execution_name = name or f"run-{uuid.uuid4().hex}"
    started = boto3.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn, name=execution_name, input=json.dumps(payload)
    )
    return {"executionArn": str(started["executionArn"]), "name": execution_name}


class LambdaDispatch:
    """moto's Lambda invoke -> the template function's worker containers (see the module docstring)."""

    def __init__(self, template: Mapping[str, Any], ctx: ResolveContext, base_dir: Path, max_containers: int = 2):
        self._template = template
        self._ctx = ctx
        self._base_dir = base_dir
        self._max_containers = max_containers
        self._by_name: dict[str, str] = {}
        for logical_id in resources_of_type(template, FUNCTION_TYPE):
            name = ctx.refs.get(logical_id, logical_id)
            self._by_name[name] = logical_id
            self._by_name[ctx.attributes.get(logical_id, {}).get("Arn", name)] = logical_id
        self._pools: dict[str, FunctionPool] = {}
        self._lock = threading.Lock()
        self._faults: dict[str, list[str]] = {}  # logical id -> error types the next invokes answer, in order
        self.invocations: dict[str, int] = {}  # logical id -> invokes dispatched (faults included)

    def fail_next(self, logical_id: str, count: int = 1, error_type: str = "Lambda.ServiceException") -> None:
        """Fault injection for tests: the next `count` invokes of the function answer `error_type` without running
        it, as a Lambda service failure reaches Step Functions; the state machine's Retry/Catch must cope."""
        with self._lock:
            self._faults.setdefault(logical_id, []).extend([error_type] * count)

    def _take_fault(self, logical_id: str) -> str | None:
        with self._lock:
            self.invocations[logical_id] = self.invocations.get(logical_id, 0) + 1
            pending = self._faults.get(logical_id)
            return pending.pop(0) if pending else None

    def logical_id(self, function: str) -> str:
        """The template function named by a name, an ARN, or an ARN with a qualifier."""
        for candidate in (function, function.rsplit(":", 1)[0]):
            if candidate in self._by_name:
                return self._by_name[candidate]
        name = function.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
        if name in self._by_name:
            return self._by_name[name]
        raise KeyError(f"no function {function} in the template")

    def pool(self, logical_id: str) -> FunctionPool:
        with self._lock:
            pool = self._pools.get(logical_id)
            if pool is None:
                spec = function_spec(self._template, logical_id, self._ctx, self._base_dir)
                pool = self._pools[logical_id] = FunctionPool(spec, self._max_containers)
            return pool

    def invoke(self, function: str, body: bytes | str | None, response_headers: dict[str, str]) -> bytes:
        event = json.loads(body or b"{}")
        try:
            logical_id = self.logical_id(function)
            fault = self._take_fault(logical_id)
            if fault is not None:
                raise FunctionError(fault, f"injected fault: {fault}")
            result = self.pool(logical_id).invoke(event)
        except FunctionError as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": error.error_type, "errorMessage": str(error)}).encode()
        except KeyError as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "ResourceNotFoundException", "errorMessage": str(error)}).encode()
        return json.dumps(result).encode()

    def install(self) -> None:
        """Route moto's (Docker-less) Lambda invokes here. moto runs in this process (ThreadedMotoServer)."""
        from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415 - heavy, only when used

        dispatch = self

        def invoke(
            self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            return dispatch.invoke(function_name, body, response_headers)

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
