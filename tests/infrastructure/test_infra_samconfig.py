"""samconfig.toml: sandbox and production deploy the same template and differ only in stack name and parameter values.

`sam validate --config-env NAME` silently ignores a config environment that does not exist, so the environments'
contents are checked here directly.
"""

from __future__ import annotations

import copy
import shlex
import tomllib
from typing import Any

import pytest

pytestmark = [pytest.mark.infrastructure, pytest.mark.xdist_group("infrastructure")]

ENVIRONMENTS = ("sandbox", "production")


@pytest.fixture
def samconfig(infra) -> dict[str, Any]:
    with infra.samconfig.open("rb") as handle:
        return tomllib.load(handle)


def parameter_overrides(value: Any) -> dict[str, str]:
    """SAM accepts `"A=1 B=2"` or a list of `"A=1"` strings."""
    items = shlex.split(value) if isinstance(value, str) else list(value)
    return dict(item.split("=", 1) for item in items)


def samconfig_violations(config: dict[str, Any], template: dict[str, Any]) -> list[str]:
    problems = []
    if str(config.get("version")) != "0.1":
        problems.append(f"version is {config.get('version')!r}, not 0.1")
    if not config.get("default", {}).get("validate", {}).get("parameters", {}).get("lint"):
        problems.append("[default.validate.parameters] lint is not true")
    declared = template.get("Parameters", {})
    overridden: dict[str, set[str]] = {}
    for env in ENVIRONMENTS:
        section = config.get(env)
        if section is None:
            problems.append(f"[{env}] missing")
            continue
        deploy = section.get("deploy", {}).get("parameters", {})
        region = deploy.get("region", section.get("global", {}).get("parameters", {}).get("region"))
        expected = {"stack_name": f"moncore-{env}", "capabilities": "CAPABILITY_IAM", "resolve_s3": True}
        for key, value in expected.items():
            if deploy.get(key) != value:
                problems.append(f"[{env}.deploy.parameters] {key} is {deploy.get(key)!r}, not {value!r}")
        if region != "eu-west-1":
            problems.append(f"[{env}] region is {region!r}, not eu-west-1")
        if env == "production" and deploy.get("confirm_changeset") is not True:
            problems.append("[production.deploy.parameters] confirm_changeset is not true")
        for command, parameters in section.items():
            template_file = parameters.get("parameters", {}).get("template_file", "template.yaml")
            if template_file not in ("template.yaml", "./template.yaml"):
                problems.append(f"[{env}.{command}] uses template {template_file!r}: both environments share one")
        overrides = parameter_overrides(deploy.get("parameter_overrides", ""))
        overridden[env] = set(overrides)
        if overrides.get("EnvironmentName") != env:
            problems.append(f"[{env}] EnvironmentName override is {overrides.get('EnvironmentName')!r}")
        for name, value in overrides.items():
            spec = declared.get(name)
            if spec is None:
                problems.append(f"[{env}] overrides {name}, which template.yaml does not declare")
                continue
            if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
                problems.append(f"[{env}] {name}={value} is not one of {spec['AllowedValues']}")
            if spec.get("Type") == "Number":
                number = float(value)
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    problems.append(f"[{env}] {name}={value} is below MinValue {spec['MinValue']}")
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    problems.append(f"[{env}] {name}={value} is above MaxValue {spec['MaxValue']}")
        missing = {name for name, spec in declared.items() if "Default" not in spec} - set(overrides)
        if missing:
            problems.append(f"[{env}] no value for {sorted(missing)} (no Default)")
    if len(overridden) == len(ENVIRONMENTS) and len({frozenset(v) for v in overridden.values()}) != 1:
        problems.append(f"environments override different parameters: {overridden}")
    return problems


def test_samconfig_holds(samconfig, template):
    problems = samconfig_violations(samconfig, template)
    assert not problems, "\n".join(problems)


def test_evidence_retention_per_environment(samconfig):
    def retention(env: str) -> int:
        return int(
            parameter_overrides(samconfig[env]["deploy"]["parameters"]["parameter_overrides"])["EvidenceRetentionDays"]
        )

    assert retention("production") == 2555  # 7 years
    assert retention("sandbox") <= 7  # COMPLIANCE-mode objects cannot be deleted before then, not even by root


def _drop_production(config: dict[str, Any]) -> None:
    config.pop("production")


def _unconfirmed_production(config: dict[str, Any]) -> None:
    config["production"]["deploy"]["parameters"]["confirm_changeset"] = False


def _wrong_environment_name(config: dict[str, Any]) -> None:
    config["sandbox"]["deploy"]["parameters"]["parameter_overrides"] = "EnvironmentName=production"


def _unknown_parameter(config: dict[str, Any]) -> None:
    config["sandbox"]["deploy"]["parameters"]["parameter_overrides"] += " FeatureFlag=on"


def _other_template(config: dict[str, Any]) -> None:
    config["production"]["deploy"]["parameters"]["template_file"] = "template-prod.yaml"


def _retention_zero(config: dict[str, Any]) -> None:
    overrides = config["sandbox"]["deploy"]["parameters"]["parameter_overrides"]
    config["sandbox"]["deploy"]["parameters"]["parameter_overrides"] = overrides.replace(
        "EvidenceRetentionDays=1", "EvidenceRetentionDays=0"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        _drop_production,
        _unconfirmed_production,
        _wrong_environment_name,
        _unknown_parameter,
        _other_template,
        _retention_zero,
    ],
)
def test_samconfig_check_catches(samconfig, template, mutate):
    mutated = copy.deepcopy(samconfig)
    mutate(mutated)
    assert mutated != samconfig
    assert samconfig_violations(mutated, template), f"{mutate.__name__} went unnoticed"
