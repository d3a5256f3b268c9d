"""Environment parity, statically (DESIGN.md invariant 11): no kernel or handler code reads the environment's name or
decides anything by it. Sandbox and production run the same code; only parameters, secrets and counterparties differ.

How the code handles it today: template.yaml's EnvironmentName appears only in resource names (checked in
tests/infrastructure/test_infra_template.py), no function gets it as a variable, moncore.config has no environment
setting, and "sandbox" in the code names simulated *counterparties* (sandbox_kyc, sandbox_open_banking: adapters
chosen by tenant configuration), never the environment. The local stack (infra/, not shipped) labels its state file
with its parameters; that is outside layers/ and functions/.

The check parses every module under layers/ and functions/ (AST, docstrings and comments ignored) and reports:
- variable:   a string naming an environment-name variable (EnvironmentName, MONCORE_ENVIRONMENT, STAGE, ...): the
              only reason to write one is to read or pass the environment's name;
- identifier: a name or attribute that holds it (settings().environment_name, is_production, ...);
- branch:     an environment name (the template's EnvironmentName AllowedValues, plus common aliases) compared with
              ==, !=, in, is, matched in a `match`, tested with startswith/endswith, or used as a mapping key;
- resource:   a resource name of one environment written out (moncore-sandbox-ledger): code that assumes which
              stack it runs in.
A finding is allowed only when ALLOWED names it (file, rule, the text found) with the reason, e.g. the name used
only as a label (logged, or returned as `environment`); an entry that no longer matches anything fails too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import REPO_ROOT, TEMPLATE_PATH
from infra.template import load_template

SCANNED = ("layers", "functions")
TEMPLATE = load_template(TEMPLATE_PATH)
PARAMETER = "EnvironmentName"
# The template's environments, plus the names other stacks commonly use (a new one must not slip past as "staging").
ENVIRONMENT_NAMES = frozenset(TEMPLATE["Parameters"][PARAMETER]["AllowedValues"]) | {
    "prod",
    "staging",
    "stage",
    "dev",
    "development",
    "test",
    "local",
    "preprod",
}
VARIABLE = re.compile(
    rf"^(?:{PARAMETER}|(?:MONCORE_|APP_|DEPLOY_)?(?:ENV|ENVIRONMENT|ENV_NAME|ENVIRONMENT_NAME|STAGE|STAGE_NAME))$"
)
IDENTIFIER = re.compile(
    r"^(?:environment_name|env_name|stage_name|deployment_environment|is_(?:prod|production|sandbox|staging|dev))$",
    re.IGNORECASE,
)
# Attributes too ambiguous as plain names (a local `environment` may be a dict of variables) but not on an object.
ATTRIBUTE = re.compile(r"^(?:environment|env|stage)$")


def _resource_prefixes() -> frozenset[str]:
    """What template.yaml puts before ${EnvironmentName} in resource names ("moncore-")."""
    prefixes: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "Fn::Sub":
                    text = item if isinstance(item, str) else item[0]
                    prefixes.update(m.group(1) for m in re.finditer(rf"([a-z0-9-]*)\$\{{{PARAMETER}\}}", text))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(TEMPLATE["Resources"])
    return frozenset(p for p in prefixes if p)


RESOURCE = re.compile(
    "(?:"
    + "|".join(re.escape(p) for p in sorted(_resource_prefixes()))
    + ")(?:"
    + "|".join(sorted(ENVIRONMENT_NAMES))
    + ")-"
)

# (file relative to the repository, rule, text found) -> why it is not a decision by the environment's name.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("layers/moncore/moncore/cli.py", "resource", "moncore-sandbox-ledger"): (
        "`moncore jobs run`: the default Ledger table name when the CLI runs with no stack environment; only its "
        "prefix is used, to find the stack's state machine by name (moncore-<env>-<job>). It locates a resource, "
        "it decides no behaviour."
    ),
}


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    rule: str
    text: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.rule, self.text)


def findings(source: str, path: str = "<snippet>") -> list[Finding]:
    tree = ast.parse(source)
    docstrings = {id(node) for node in _docstrings(tree)}
    found: list[Finding] = []

    def add(node: ast.AST, rule: str, text: str) -> None:
        found.append(Finding(path, getattr(node, "lineno", 0), rule, text))

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if VARIABLE.match(node.value):
                add(node, "variable", node.value)
            elif RESOURCE.search(node.value):
                add(node, "resource", node.value)
        elif isinstance(node, ast.Name) and IDENTIFIER.match(node.id):
            add(node, "identifier", node.id)
        elif isinstance(node, ast.Attribute) and (IDENTIFIER.match(node.attr) or ATTRIBUTE.match(node.attr)):
            add(node, "identifier", node.attr)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg and IDENTIFIER.match(node.arg):
            add(node, "identifier", node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and IDENTIFIER.match(node.name):
            add(node, "identifier", node.name)
        for name in _environment_names_decided_on(node):
            add(node, "branch", name)
    return sorted(found)


def _environment_names_decided_on(node: ast.AST) -> Iterator[str]:
    """Environment names this node compares, matches, prefix-tests or looks up."""
    if isinstance(node, ast.Compare):
        for operand in [node.left, *node.comparators]:
            yield from _names_in(operand)
    elif isinstance(node, ast.match_case):
        for pattern in ast.walk(node.pattern):
            if isinstance(pattern, ast.MatchValue):
                yield from _names_in(pattern.value)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("startswith", "endswith", "removeprefix", "removesuffix", "get", "__contains__"):
            for argument in node.args[:1]:
                yield from _names_in(argument)
    elif isinstance(node, ast.Dict):
        for key in node.keys:
            if key is not None:
                yield from _names_in(key)


def _names_in(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in ENVIRONMENT_NAMES:
        yield node.value
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _names_in(element)


def _docstrings(tree: ast.Module) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                yield first.value


def scan() -> list[Finding]:
    found: list[Finding] = []
    for root in SCANNED:
        for file in sorted((REPO_ROOT / root).rglob("*.py")):
            relative = file.relative_to(REPO_ROOT).as_posix()
            found += findings(file.read_text(encoding="utf-8"), relative)
    return found


# ---------------------------------------------------------------- the check


def test_no_kernel_or_handler_code_reads_or_branches_on_the_environment_name() -> None:
    unexplained = [f for f in scan() if f.key not in ALLOWED]
    assert not unexplained, "\n".join(f"{f.path}:{f.line}: {f.rule} {f.text!r}" for f in unexplained)


def test_every_allowed_exception_still_exists() -> None:
    present = {f.key for f in scan()}
    assert set(ALLOWED) <= present, f"stale ALLOWED entries: {sorted(set(ALLOWED) - present)}"


def test_the_scan_reads_the_kernel_and_every_handler() -> None:
    scanned = {Path(root) for root in SCANNED}
    handlers = sorted((REPO_ROOT / "functions").glob("*/app.py"))
    assert len(handlers) >= 6 and (REPO_ROOT / "layers/moncore/moncore/config.py").is_file()
    assert all(Path(h.relative_to(REPO_ROOT).parts[0]) in scanned for h in handlers)
    assert {"sandbox", "production"} <= ENVIRONMENT_NAMES and _resource_prefixes() == {"moncore-"}


# ---------------------------------------------------------------- the check catches what it must, and only that

CAUGHT = {
    "env_var_subscript": ('import os\nname = os.environ["MONCORE_ENVIRONMENT"]\n', "variable"),
    "env_var_getenv": ('import os\nname = os.getenv("ENVIRONMENT")\n', "variable"),
    "template_parameter": ('value = parameters["EnvironmentName"]\n', "variable"),
    "settings_attribute": ("if settings().environment_name:\n    pass\n", "identifier"),
    "settings_environment": ("label = settings().environment\n", "identifier"),
    "flag": ("is_production = True\n", "identifier"),
    "equals": ('if env == "production":\n    pass\n', "branch"),
    "not_equals_reversed": ('if "sandbox" != name:\n    pass\n', "branch"),
    "in_tuple": ('if name in ("sandbox", "staging"):\n    pass\n', "branch"),
    "substring": ('if "prod" in table_name:\n    pass\n', "branch"),
    "match": ('match env:\n    case "sandbox":\n        pass\n', "branch"),
    "startswith": ('if stack.startswith("prod"):\n    pass\n', "branch"),
    "lookup_table": ('timeout = {"sandbox": 1, "production": 5}[env]\n', "branch"),
    "lookup_get": ('timeout = TIMEOUTS.get("production")\n', "branch"),
    "resource_of_one_stack": ('table = "moncore-production-ledger"\n', "resource"),
}


@pytest.mark.parametrize("case", sorted(CAUGHT))
def test_the_check_catches(case: str) -> None:
    source, rule = CAUGHT[case]
    assert rule in {f.rule for f in findings(source)}, findings(source)


NOT_CAUGHT = {
    "docstring": '"""Works the same in sandbox and production."""\n',
    "function_docstring": 'def f():\n    """The sandbox adapter; production uses another."""\n',
    "provider_name": 'if provider == "sandbox_kyc":\n    pass\n',
    "capability_mode": 'if mode == "live":\n    pass\n',
    "counterparty_account": 'account = f"sandbox-safeguarding-{tenant_id}"\n',
    "other_variable": 'import os\ntable = os.environ["MONCORE_LEDGER_TABLE"]\n',
    "environ_itself": "import os\nvariables = dict(os.environ)\n",
    "local_dict_of_variables": 'environment = state.get("variables")\n',
}


@pytest.mark.parametrize("case", sorted(NOT_CAUGHT))
def test_the_check_leaves_alone(case: str) -> None:
    assert findings(NOT_CAUGHT[case]) == []
