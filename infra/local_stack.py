"""`make run`: the whole MonCore API on one machine, built from template.yaml.

DynamoDB Local and moto stand in for AWS, the tables, bucket, key and secret are created from the template's own
properties, the functions' environment is computed like Lambda computes it, and a local API Gateway serves the
template's routes. A demo tenant is then seeded through the public admin API, like an operator would do it.

Environment:
  MONCORE_PORT         port to serve on (default 3000; 0 picks a free one)
  MONCORE_PARAMETERS   template parameter overrides, "EnvironmentName=sandbox AuthorizerCacheTtlSeconds=0"
  MONCORE_STATE_DIR    where stack.json goes (default .local/)
  MONCORE_SCHEDULER    "off" stops the local scheduler from firing the template's schedules (infra/scheduler.py)
  MONCORE_SCHEDULER_SPEED  run the schedules' clock this many times faster (60: rate(5 minutes) every 5 s)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Self

from infra import REPO_ROOT, TEMPLATE_PATH
from infra.environment import apply_environment, forget_imported_kernel, shared_environment
from infra.gateway import LocalGateway, LocalHTTPServer
from infra.processes import DynamoDBLocal, MotoServer
from infra.resources import Endpoints, create_resources
from infra.scheduler import Scheduler, SchedulerOptions, options_from_environ
from infra.stepfunctions import LambdaDispatch, create_state_machines
from infra.template import ResolveContext, evaluate_conditions, load_template, parameter_values

log = logging.getLogger("infra.local_stack")

# The local stack's tenants settle fundings in the open banking provider's answer (sandbox_open_banking_instant), so
# the README walkthrough, the e2e tests and the benches need no webhook delivery; a tenant switched to
# sandbox_open_banking (PATCH /admin/v1/tenants/{id}/config) gets asynchronous outcomes by webhook (docs/providers.md).
DEFAULT_PARAMETERS = {"EnvironmentName": "sandbox", "DefaultOpenBankingProvider": "sandbox_open_banking_instant"}
DEFAULT_PORT = 3000
DEMO_TENANT = {"name": "Demo Tenant", "jurisdictions": ["GB", "FR"]}

# send(method, path, api_key, json_body) -> (status, parsed JSON body)
Send = Callable[[str, str, str, Mapping[str, Any]], tuple[int, Any]]


def parse_parameters(text: str | None) -> dict[str, str]:
    """ "A=1 B=two" -> {"A": "1", "B": "two"} (the MONCORE_PARAMETERS format, like sam --parameter-overrides)."""
    overrides = {}
    for item in (text or "").split():
        name, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"MONCORE_PARAMETERS: expected Name=Value, got {item!r}")
        overrides[name] = value
    return overrides


class LocalBackend:
    """DynamoDB Local + moto, the template's resources in them, and the shared function environment in os.environ."""

    def __init__(self, parameters: Mapping[str, str] | None = None, template_path: Path = TEMPLATE_PATH) -> None:
        self.template_path = Path(template_path)
        self.template = load_template(self.template_path)
        self.parameters = {**DEFAULT_PARAMETERS, **(parameters or {})}
        self.ctx = ResolveContext(parameter_values(self.template, self.parameters))
        evaluate_conditions(self.template, self.ctx)
        self.dynamodb = DynamoDBLocal()
        self.moto = MotoServer()
        self.endpoints = Endpoints(dynamodb=self.dynamodb.endpoint_url, aws=self.moto.endpoint_url)
        self.environment: dict[str, str] = {}
        self.states: LambdaDispatch | None = None

    def start(self) -> Self:
        try:
            self.dynamodb.start(wait=False)  # Java boots while moto starts
            self.moto.start()
            self.dynamodb.wait_ready()
            create_resources(self.template, self.ctx, self.endpoints)
            create_state_machines(self.template, self.ctx, self.endpoints, self.template_path.parent)
        except BaseException:
            self.stop()
            raise
        # Step Functions' Lambda tasks run in the template's handlers (worker processes, started on first use).
        self.states = LambdaDispatch(self.template, self.ctx, self.template_path.parent)
        self.states.install()
        # Before any moncore/handler import: the kernel reads these when its modules load.
        self.environment = shared_environment(self.template, self.ctx, self.endpoints)
        apply_environment(self.environment)
        forget_imported_kernel()  # a kernel imported earlier in this process was bound to other settings
        return self

    def gateway(self, **overrides: Any) -> LocalGateway:
        """A LocalGateway for this template (handlers resolve relative to the template's directory)."""
        return LocalGateway(self.template, self.ctx, base_dir=self.template_path.parent, **overrides)

    def scheduler(self, **overrides: Any) -> Scheduler:
        """A Scheduler for the template's schedule events (targets run in worker processes, like the gateway's)."""
        return Scheduler(self.template, self.ctx, base_dir=self.template_path.parent, **overrides)

    def stop(self) -> None:
        if self.states is not None:
            self.states.close()
        self.moto.stop()
        self.dynamodb.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def create_demo_tenant(send: Send, admin_key: str, body: Mapping[str, Any] = DEMO_TENANT) -> tuple[str, str]:
    """Create a tenant and one API key for it through the admin API; returns (tenant id, tenant API key)."""
    status, tenant = send("POST", "/admin/v1/tenants", admin_key, body)
    if status != 201:
        raise RuntimeError(f"POST /admin/v1/tenants answered {status}: {tenant}")
    tenant_id = str(tenant["id"])
    status, key = send("POST", f"/admin/v1/tenants/{tenant_id}/api-keys", admin_key, {})
    if status != 201:
        raise RuntimeError(f"POST /admin/v1/tenants/{tenant_id}/api-keys answered {status}: {key}")
    return tenant_id, str(key["api_key"])


def create_admin_key(name: str = "local-admin", role: str = "admin") -> tuple[str, str]:
    """An admin key issued directly by the kernel (there is no API to create the first one); (key id, api key)."""
    from moncore.tenancy.service import TenancyService  # noqa: PLC0415 - only after the environment is applied

    issued = TenancyService().create_admin_key(name=name, role=role)
    return str(issued.key_id), str(issued.api_key)


def http_send(base_url: str) -> Send:
    """A `Send` over real HTTP (urllib), with an Idempotency-Key per call."""

    def send(method: str, path: str, api_key: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 - the local stack's own http://127.0.0.1 URL
            base_url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Idempotency-Key": str(uuid.uuid4()),
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    return send


def wait_for_health(base_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=10) as response:  # noqa: S310
                if response.status == 200:
                    return
                last = response.status
        except (urllib.error.URLError, OSError) as error:
            last = error
        time.sleep(0.2)
    raise RuntimeError(f"GET {base_url}/health did not answer 200 within {timeout:.0f}s (last: {last})")


@dataclass(frozen=True)
class StackInfo:
    base_url: str
    admin_key: str
    tenant_key: str
    tenant_id: str

    @property
    def docs_url(self) -> str:
        return f"{self.base_url}/docs"

    @property
    def openapi_url(self) -> str:
        return f"{self.base_url}/v1/openapi.json"


class LocalStack:
    """Backend + local API Gateway served over HTTP + demo seed. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        parameters: Mapping[str, str] | None = None,
        state_dir: Path | None = None,
        host: str = "127.0.0.1",
        template_path: Path = TEMPLATE_PATH,
        scheduler: SchedulerOptions | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self.state_dir = state_dir or REPO_ROOT / ".local"
        self.backend = LocalBackend(parameters, template_path)
        self.server: LocalHTTPServer | None = None
        self.gateway: LocalGateway | None = None
        self.scheduler_options = scheduler or SchedulerOptions()
        self.scheduler: Scheduler | None = None
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        try:
            self.backend.start()
            self.gateway = gateway = self.backend.gateway()
            # Built before anything is served, so an unsupported schedule expression fails the start loudly.
            options = self.scheduler_options
            self.scheduler = self.backend.scheduler(pools=gateway.pools, enabled=options.enabled, speed=options.speed)
            for logical_id, error in gateway.warm().items():
                log.warning("function %s failed to initialise: %s", logical_id, error)
            self.server = gateway.serve(self.host, self.port)
            base_url = self.server.url
            wait_for_health(base_url)
            _, admin_key = create_admin_key()
            tenant_id, tenant_key = create_demo_tenant(http_send(base_url), admin_key)
            self.info = StackInfo(base_url=base_url, admin_key=admin_key, tenant_key=tenant_key, tenant_id=tenant_id)
            self._write_state(self.info)
            self.scheduler.start()  # the first runs find the stack seeded
            return self.info
        except BaseException:
            self.stop()
            raise

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def _write_state(self, info: StackInfo) -> None:
        # Written atomically: tests and tools poll for this file to know the stack is ready.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".json.tmp")
        # The shared function environment (table names, local endpoints, fake credentials) lets `moncore jobs run`
        # and other kernel commands reach this stack from another shell.
        state = asdict(info) | {"environment": self.backend.environment}
        partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        partial.replace(self.state_file)

    def stop(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:  # first: no job starts against a stopping backend
            scheduler.stop()
        server, self.server = self.server, None
        if server is not None:
            server.stop()
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            gateway.close()
        self.backend.stop()

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def banner(info: StackInfo, state_file: Path, scheduler: Scheduler | None = None) -> str:
    rows = [
        ("API", info.base_url),
        ("Swagger UI", info.docs_url),
        ("OpenAPI", info.openapi_url),
        ("Admin key", info.admin_key),
        ("Tenant id", info.tenant_id),
        ("Tenant key", info.tenant_key),
        ("State file", str(state_file)),
    ]
    lines = ["", "MonCore local stack is up", *(f"  {name:<11} {value}" for name, value in rows)]
    lines += ["", "  curl -H 'Authorization: Bearer <tenant key>' " + info.base_url + "/v1/users/...", ""]
    if scheduler is not None and scheduler.schedules:
        if not scheduler.enabled:
            state = "off (MONCORE_SCHEDULER=off): run one with `moncore jobs run`"
        else:
            state = "on" if scheduler.speed == 1 else f"on, clock {scheduler.speed:g}x faster"
        lines += [f"Schedules (template schedule events; local scheduler {state}):"]
        lines += [f"  {line}" for line in scheduler.describe()] + [""]
    lines += ["Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def _graceful_exit(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so `finally` blocks stop the server, moto and Java.
    raise SystemExit(128 + signum)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("botocore", "pynamodb"):  # no "Found credentials"/"default settings" lines at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _graceful_exit)
    parameters = {**DEFAULT_PARAMETERS, **parse_parameters(os.environ.get("MONCORE_PARAMETERS"))}
    port = int(os.environ.get("MONCORE_PORT", DEFAULT_PORT))
    state_dir = Path(os.environ.get("MONCORE_STATE_DIR") or REPO_ROOT / ".local")
    stack = LocalStack(
        port=port, parameters=parameters, state_dir=state_dir, scheduler=options_from_environ(os.environ)
    )
    try:
        info = stack.start()
        print(banner(info, stack.state_file, stack.scheduler), flush=True)
        threading.Event().wait()  # until Ctrl-C or a signal
    except KeyboardInterrupt:
        pass
    except SystemExit as stop:
        return 0 if stop.code in (128 + signal.SIGTERM, 128 + signal.SIGHUP) else 1
    except Exception:
        log.exception("the local stack failed to start")
        return 1
    finally:
        stack.stop()
        print("MonCore local stack stopped.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
