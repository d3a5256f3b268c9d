"""Shared helpers for the infrastructure tests (template.yaml, samconfig.toml, cfn-lint, SAM CLI).

Every test module here marks itself `infrastructure` and puts itself in the xdist group "infrastructure", so under
`pytest -n 2 --dist loadgroup` the slow subprocess tests (cfn-lint, sam validate, sam build) run on one worker and
never race each other.
"""

from __future__ import annotations

import copy
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SAMCONFIG_PATH = REPO_ROOT / "samconfig.toml"
CFN_LINT = REPO_ROOT / ".venv" / "bin" / "cfn-lint"
SAM_VENV = REPO_ROOT / ".venv-sam"
SAM = SAM_VENV / "bin" / "sam"
SAM_PYTHON = SAM_VENV / "bin" / "python"
REGION = "eu-west-1"
# sam build finds python3.13 through pyenv only when all three interpreters are selected (DESIGN.md section 9).
PYENV_VERSION = "3.11.7:3.12.1:3.13.0"

LoadTemplate = Callable[[Path], dict[str, Any]]


# ---------------------------------------------------------------- template loading
# infra/template.py owns the project's CloudFormation YAML loader (short tags -> long JSON forms: {"Ref": ...},
# {"Fn::GetAtt": [id, attr]}, {"Fn::Sub": ...}). The fallback below produces the same shape and is only used when
# infra/ cannot be imported, so these tests do not depend on the local stack being importable.
class _CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def _fallback_load_template(path: Path) -> dict[str, Any]:
    with Path(path).open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass
    assert isinstance(document, dict), f"{path} is not a template mapping"
    return document


def _project_loader() -> LoadTemplate:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        module = importlib.import_module("infra.template")
    except ImportError:
        return _fallback_load_template
    loader: LoadTemplate | None = getattr(module, "load_template", None)
    return loader or _fallback_load_template


_load: LoadTemplate = _project_loader()


@pytest.fixture(scope="session")
def load_template() -> LoadTemplate:
    """Parse any template file (used by the mutation tests on temporary copies)."""
    return _load


@pytest.fixture(scope="session")
def _template_cache() -> dict[str, Any]:
    return _load(TEMPLATE_PATH)


@pytest.fixture
def template(_template_cache: dict[str, Any]) -> dict[str, Any]:
    """template.yaml with intrinsics in long JSON form; a private copy per test, so tests may mutate it."""
    return copy.deepcopy(_template_cache)


# ---------------------------------------------------------------- subprocesses
def _pyenv_shims() -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    shims = root / "shims"
    return [str(shims)] if shims.is_dir() else []


def tool_env(**extra: str) -> dict[str, str]:
    """Offline environment for cfn-lint and the SAM CLI: a region, fake credentials, no telemetry, pyenv's pythons."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    path = [*_pyenv_shims(), *env.get("PATH", os.defpath).split(os.pathsep)]
    env.update(
        PATH=os.pathsep.join(dict.fromkeys(path)),
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # fake: nothing here talks to AWS
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
        PYENV_VERSION=PYENV_VERSION,
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class Infra:
    """Paths of the things under test and a subprocess runner with an offline environment."""

    repo: Path = REPO_ROOT
    template: Path = TEMPLATE_PATH
    samconfig: Path = SAMCONFIG_PATH
    cfn_lint: Path = CFN_LINT
    sam: Path = SAM
    sam_python: Path = SAM_PYTHON

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        return tool_env(**extra)

    @staticmethod
    def require(executable: Path) -> None:
        if not os.access(executable, os.X_OK):
            pytest.fail(f"{executable} is missing: run `make setup` (it creates .venv and .venv-sam)")

    def run(
        self,
        args: list[Any],
        *,
        cwd: Path | None = None,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        self.require(Path(args[0]))
        return subprocess.run(  # fixed argv, no shell
            [str(arg) for arg in args],
            cwd=cwd or self.repo,
            env=dict(env) if env is not None else tool_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @staticmethod
    def describe(result: subprocess.CompletedProcess[str]) -> str:
        """What a failing assertion shows: the command, its exit code and both output streams."""
        command = " ".join(str(arg) for arg in result.args)
        return f"$ {command}\nexit code {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture(scope="session")
def infra() -> Infra:
    return Infra()
