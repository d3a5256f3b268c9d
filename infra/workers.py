"""Lambda containers as worker processes.

Why processes and not threads: a Lambda container serves one request at a time in its own interpreter, and
powertools' resolver keeps the current event on a class attribute (`BaseRouter.current_event`) shared by every resolver
in the process. Two requests handled by threads of one process could therefore read each other's event (and tenant).
A worker process per container reproduces Lambda's isolation exactly, gives each function its own environment
variables (POWERTOOLS_SERVICE_NAME, ...), and lets concurrent requests really run in parallel on both cores.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024


class FunctionError(Exception):
    """The handler raised: `error_type` is the exception class name (as Lambda's errorType), str() its message."""

    def __init__(self, error_type: str, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.trace = trace


@dataclass
class _Context:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _worker_main(
    conn: Connection,
    module_file: str,
    code_dir: str,
    handler_name: str,
    env: dict[str, str],
    function_name: str,
    function_arn: str,
    memory_mb: int,
    timeout_s: int,
) -> None:
    """Runs in the child: set the environment first (the kernel reads it at import), import once, serve forever."""
    # Ctrl-C reaches the whole process group: the parent stops its containers in order, so a worker ignores SIGINT
    # instead of dying mid-invocation with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, code_dir)
    sys.path.insert(1, str(REPO_ROOT / "layers" / "moncore"))
    try:
        spec = importlib.util.spec_from_file_location("app", module_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {module_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["app"] = module
        spec.loader.exec_module(module)
        handler = getattr(module, handler_name)
        conn.send(("ready", None))
    except BaseException as exc:  # report the init error to the parent instead of dying silently
        conn.send(("init_error", (type(exc).__name__, str(exc), traceback.format_exc())))
        return
    while True:
        try:
            payload = conn.recv_bytes()
        except EOFError:
            return
        context = _Context(
            function_name,
            function_arn,
            memory_mb,
            str(uuid.uuid4()),
            time.monotonic() + timeout_s,
            log_group_name=f"/aws/lambda/{function_name}",
        )
        try:
            result = handler(json.loads(payload), context)
            conn.send_bytes(json.dumps(["ok", result]).encode())
        except Exception as exc:
            conn.send_bytes(json.dumps(["error", [type(exc).__name__, str(exc), traceback.format_exc()]]).encode())


class ProcessContainer:
    """One warm Lambda container: a worker process serving one request at a time."""

    def __init__(
        self,
        *,
        module_file: Path,
        code_dir: Path,
        handler_name: str,
        env: dict[str, str],
        function_name: str,
        function_arn: str,
        memory_mb: int,
        timeout_s: int,
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._lock = threading.Lock()
        self._process = ctx.Process(
            target=_worker_main,
            args=(
                child,
                str(module_file),
                str(code_dir),
                handler_name,
                env,
                function_name,
                function_arn,
                memory_mb,
                timeout_s,
            ),
            daemon=True,
        )
        self._process.start()
        child.close()
        status, detail = self._conn.recv()
        if status != "ready":
            self.close()
            error_type, message, trace = detail
            raise FunctionError(error_type, f"init failed: {message}", trace)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            try:
                self._conn.send_bytes(json.dumps(event).encode())
                raw = self._conn.recv_bytes()
            except (EOFError, OSError, BrokenPipeError):
                raise FunctionError("Runtime.ExitError", "the container exited while handling the request") from None
        if len(raw) > MAX_LAMBDA_RESPONSE_BYTES:
            raise FunctionError("Function.ResponseSizeTooLarge", "Lambda response payload exceeds 6 MB")
        status, value = json.loads(raw)
        if status == "error":
            error_type, message, trace = value
            raise FunctionError(error_type, message, trace)
        return value

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self) -> None:
        self._conn.close()
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=2)
