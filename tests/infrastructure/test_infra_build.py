"""`sam build` succeeds offline (no containers) and produces a usable layer and one package per function.

The build goes to a pytest tmp dir; sam runs with that dir as its working directory, so nothing (build.toml, caches)
is written into the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.infrastructure, pytest.mark.xdist_group("infrastructure")]


def test_sam_build(infra, template, tmp_path):
    # One test, one build: with pytest 9.2 and pytest-xdist 3.8, `--dist loadgroup` does not actually keep an
    # xdist_group on one worker (pytest-dev/pytest-xdist#1386), so separate tests sharing a fixture could build twice.
    build_dir = tmp_path / "build"
    result = infra.run(
        [
            infra.sam,
            "build",
            "--template-file",
            infra.template,
            "--config-file",
            infra.samconfig,
            "--build-dir",
            build_dir,
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, infra.describe(result)
    assert (build_dir / "template.yaml").is_file(), infra.describe(result)

    problems = layer_problems(build_dir / "MonCoreLayer" / "python") + handler_problems(build_dir, template)
    assert not problems, "\n".join(problems)


def layer_problems(python: Path) -> list[str]:
    if not python.is_dir():
        return [f"{python} was not built"]
    problems = []
    contents = sorted(p.name for p in python.iterdir())
    for required in ("moncore/__init__.py", "pydantic/__init__.py"):
        if not (python / required).is_file():
            problems.append(f"layer lacks python/{required}; it has {contents}")
    # pydantic-core is a binary wheel: it must be the one for the Lambda runtime (CPython 3.13, x86_64 Linux).
    binaries = sorted(p.name for p in python.glob("pydantic_core/_pydantic_core*.so"))
    if binaries != ["_pydantic_core.cpython-313-x86_64-linux-gnu.so"]:
        problems.append(f"layer's pydantic-core binaries are {binaries}, not the CPython 3.13 x86_64 one")
    return problems


def handler_problems(build_dir: Path, template: dict[str, Any]) -> list[str]:
    functions = {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    if not functions:
        return ["template.yaml declares no functions"]
    problems = []
    for logical_id, properties in sorted(functions.items()):
        module = properties["Handler"].rsplit(".", 1)[0].replace(".", "/") + ".py"
        if not (build_dir / logical_id / module).is_file():
            problems.append(f"built {logical_id} lacks its handler module {module} ({properties['CodeUri']}{module})")
    return problems
