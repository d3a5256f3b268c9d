"""End-to-end fixtures: the real `python -m infra.local_stack` (what `make run` starts), over real HTTP.

The stack runs as a subprocess on a free port (MONCORE_PORT=0) with its state file in a temporary directory
(MONCORE_STATE_DIR); the fixture waits for stack.json, and stops the process (and with it Java and moto) at the end.
A subprocess, not a thread, because the kernel's settings live in os.environ and imported modules, which must not be
shared with the in-process integration fixtures of the same worker.

    def test_health(stack):
        assert requests.get(f"{stack.base_url}/health", timeout=10).status_code == 200

Modules that use `stack` should set `pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]` so that one
worker runs them all against one stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.processes import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Stack:
    base_url: str
    admin_key: str
    tenant_key: str
    tenant_id: str
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def _wait_for_state(process: subprocess.Popen[bytes], state_file: Path, log_file: Path) -> dict[str, str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if state_file.exists():
            return dict(json.loads(state_file.read_text()))
        if process.poll() is not None:
            raise RuntimeError(f"local stack exited with {process.returncode}:\n{log_file.read_text()[-6000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"local stack not ready after {STARTUP_TIMEOUT_SECONDS}s:\n{log_file.read_text()[-6000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM lets the stack stop Java and moto itself; SIGKILL of its group only if it hangs.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state_dir = tmp_path_factory.mktemp("local-stack")
    log_file = state_dir / "stack.log"
    environment = {
        **os.environ,
        "MONCORE_PORT": "0",
        "MONCORE_STATE_DIR": str(state_dir),
        "MONCORE_PARAMETERS": os.environ.get("MONCORE_E2E_PARAMETERS", "EnvironmentName=sandbox"),
        "PYTHONUNBUFFERED": "1",
    }
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local_stack"],
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the test terminal reaches pytest, which then stops the stack
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - a SIGKILLed pytest leaves no stack behind
        )
    try:
        state = _wait_for_state(process, state_dir / "stack.json", log_file)
        yield Stack(
            base_url=state["base_url"],
            admin_key=state["admin_key"],
            tenant_key=state["tenant_key"],
            tenant_id=state["tenant_id"],
            log_file=log_file,
        )
    finally:
        _stop(process)
