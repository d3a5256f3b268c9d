"""Read template.yaml (CloudFormation short tags included) and resolve the intrinsic functions the local stack needs.

The local stack derives tables, bucket, key, secret, environment variables and routes from the template's own
properties, so the template stays the single source of truth. Only the intrinsics this template family uses are
resolved; anything else raises, so a new construct fails loudly instead of silently producing a wrong name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra import LOCAL_ACCOUNT_ID, LOCAL_REGION, TEMPLATE_PATH

# Short tag -> long form. !GetAtt and !Ref are special-cased below; the rest map 1:1 to "Fn::<Name>".
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class TemplateError(ValueError):
    """The template uses something the local resolver cannot (or must not) guess."""


class CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation short-form tags (`!Ref`, `!GetAtt`, `!Sub`, ...)."""


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unsupported YAML node {node!r}")


def _fn_constructor(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {name: _construct_node(loader, node)}

    return construct


def _construct_getatt(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    # Short form is "Resource.Attribute" (the attribute itself may contain dots, e.g. Endpoint.Address).
    if isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!Ref", _fn_constructor("Ref"))
CfnLoader.add_constructor("!Condition", _fn_constructor("Condition"))
CfnLoader.add_constructor("!GetAtt", _construct_getatt)
for _tag in _FN_TAGS:
    CfnLoader.add_constructor(f"!{_tag}", _fn_constructor(f"Fn::{_tag}"))


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template; short tags become their long JSON forms."""
    with Path(path).open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader subclass
    if not isinstance(document, dict):
        raise TemplateError(f"{path}: not a template mapping")
    return document


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Template defaults overridden by `overrides`; like CloudFormation, every value is a string."""
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    unknown = set(overrides or {}) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameter override(s): {sorted(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if overrides and name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = _cfn_string(spec["Default"])
        else:
            raise TemplateError(f"parameter {name} has no Default: pass it as an override")
        allowed = spec.get("AllowedValues")
        if allowed and values[name] not in [_cfn_string(v) for v in allowed]:
            raise TemplateError(f"parameter {name}={values[name]!r} is not one of {allowed}")
    return values


def _cfn_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class ResolveContext:
    """What `Ref` and `Fn::GetAtt` can see: parameters, pseudo parameters and already known physical resources."""

    parameters: Mapping[str, str]
    # logical id -> value of `Ref` (table name, bucket name, key id, secret ARN, function name, ...)
    refs: dict[str, str] = field(default_factory=dict)
    # logical id -> {attribute: value} for `Fn::GetAtt` (Arn, StreamArn, ...)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    region: str = LOCAL_REGION
    account_id: str = LOCAL_ACCOUNT_ID
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::StackName": "moncore-local",
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:stack/local/0",
        }.get(name)

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self.pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.refs:
            return self.refs[name]
        raise TemplateError(f"unresolved Ref {name!r}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attributes[logical_id][attribute]
        except KeyError:
            raise TemplateError(f"unresolved Fn::GetAtt {logical_id}.{attribute}") from None


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _sub(template: str, ctx: ResolveContext, variables: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name.startswith("!"):  # "${!Literal}" renders as "${Literal}"
            return "${" + name[1:] + "}"
        if name in variables:
            return variables[name]
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return ctx.get_att(logical_id, attribute)
        return ctx.ref(name)

    return _SUB_VARIABLE.sub(replace, template)


def _resolve_fn(name: str, arg: Any, ctx: ResolveContext) -> Any:
    if name == "Ref":
        return ctx.ref(arg)
    if name == "Fn::GetAtt":
        logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        return ctx.get_att(logical_id, resolve(attribute, ctx))
    if name == "Fn::Sub":
        if isinstance(arg, str):
            return _sub(arg, ctx, {})
        text, variables = arg
        return _sub(text, ctx, {key: _cfn_string(resolve(value, ctx)) for key, value in variables.items()})
    if name == "Fn::Join":
        delimiter, items = arg
        return delimiter.join(_cfn_string(item) for item in resolve(items, ctx))
    if name == "Fn::Select":
        index, items = arg
        return resolve(items, ctx)[int(resolve(index, ctx))]
    if name == "Fn::Split":
        delimiter, text = arg
        return resolve(text, ctx).split(delimiter)
    if name == "Fn::If":
        condition, if_true, if_false = arg
        return resolve(if_true if _condition(condition, ctx) else if_false, ctx)
    if name in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition"):
        return _evaluate(name, arg, ctx)
    raise TemplateError(f"{name} is not supported by the local resolver")


def _condition(name: str, ctx: ResolveContext) -> bool:
    if name not in ctx.conditions:
        raise TemplateError(f"unknown condition {name!r}")
    return ctx.conditions[name]


def _evaluate(name: str, arg: Any, ctx: ResolveContext) -> bool:
    if name == "Condition":
        return _condition(arg, ctx)
    if name == "Fn::Equals":
        left, right = (_cfn_string(resolve(item, ctx)) for item in arg)
        return left == right
    values = [bool(resolve(item, ctx)) for item in arg]
    if name == "Fn::And":
        return all(values)
    if name == "Fn::Or":
        return any(values)
    return not values[0]  # Fn::Not


def _is_intrinsic(value: Mapping[str, Any]) -> bool:
    if len(value) != 1:
        return False
    (key,) = value
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def resolve(value: Any, ctx: ResolveContext) -> Any:
    """Resolve intrinsics recursively; `Ref: AWS::NoValue` removes the surrounding key or list item."""
    if isinstance(value, list):
        return [item for item in (resolve(item, ctx) for item in value) if item is not _NO_VALUE]
    if isinstance(value, dict):
        if _is_intrinsic(value):
            ((name, arg),) = value.items()
            if name == "Ref" and arg == "AWS::NoValue":
                return _NO_VALUE
            return _resolve_fn(name, arg, ctx)
        resolved = {key: resolve(item, ctx) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
    return value


_NO_VALUE = object()


def evaluate_conditions(template: Mapping[str, Any], ctx: ResolveContext) -> dict[str, bool]:
    """Evaluate the template's Conditions section (in order, conditions may reference earlier ones)."""
    for name, expression in (template.get("Conditions") or {}).items():
        ((fn, arg),) = expression.items()
        ctx.conditions[name] = _evaluate(fn, arg, ctx)
    return ctx.conditions


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource definition, for one CloudFormation/SAM type, in template order."""
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == resource_type
    }
