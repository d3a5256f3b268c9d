"""`moncore` command line (API.md "Command line"). Subcommands of later capabilities register here too.

moncore admin create-key --name NAME [--role admin]   issue an admin API key (operator bootstrap; prints it once)
moncore money format AMOUNT_MINOR CURRENCY            render minor units as the API's decimal string
moncore screening score NAME1 NAME2                   the screening engine's score (0..1) and explanation for a pair
moncore jobs run JOB --tenant T [--date D]            run a scheduled job (expire_holds, snapshot, rebuild_verify,
                                                      rebuild_restore, rescreen, tier_enforcement) for one tenant;
                                                      prints its report as JSON

Kernel commands use the stack's function environment variables (table names, endpoints). When they are not set, the
environment the local stack (`make run`) wrote into its state file is used: $MONCORE_STATE_DIR/stack.json, else
.local/stack.json, or --stack-file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from moncore import __version__


def _create_admin_key(args: argparse.Namespace) -> int:
    from moncore.tenancy.service import TenancyService  # noqa: PLC0415 - needs table settings from the environment

    issued = TenancyService().create_admin_key(name=args.name, role=args.role, created_by="cli:operator")
    print(json.dumps({"key_id": issued.key_id, "api_key": issued.api_key, "role": args.role}))
    return 0


def _use_stack_environment(stack_file: str | None) -> None:
    """Point the kernel at the local stack unless the environment already names the stack's tables. Must run before
    any kernel module that reads settings is imported."""
    if "MONCORE_LEDGER_TABLE" in os.environ and stack_file is None:
        return
    state_dir = os.environ.get("MONCORE_STATE_DIR") or ".local"
    path = Path(stack_file) if stack_file else Path(state_dir) / "stack.json"
    if not path.is_file():
        if stack_file:
            raise FileNotFoundError(f"no stack state file at {path}")
        return  # nothing to go on: the defaults (or a deployed stack's credentials) apply
    environment = json.loads(path.read_text(encoding="utf-8")).get("environment") or {}
    os.environ.update({str(name): str(value) for name, value in environment.items()})


def _run_job(args: argparse.Namespace) -> int:
    try:
        _use_stack_environment(args.stack_file)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from moncore.domain.errors import DomainError  # noqa: PLC0415 - after the environment is set
    from moncore.ledger.jobs import JobFailed, run_job  # noqa: PLC0415

    try:
        result = run_job(args.job, args.tenant, args.date)
    except DomainError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        print(json.dumps(exc.result, indent=2))
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _format_money(args: argparse.Namespace) -> int:
    from moncore.domain.errors import DomainError  # noqa: PLC0415
    from moncore.domain.money import format_minor  # noqa: PLC0415

    try:
        print(format_minor(int(args.amount_minor), args.currency))
    except (DomainError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _screening_score(args: argparse.Namespace) -> int:
    """The engine's name score for one pair, with the shipped lists' token weights (the lists must be found:
    MONCORE_SANCTIONS_DIR or ../shared/data/sanctions beside the repo)."""
    from moncore.compliance.screening import ListsNotFound, default_engine  # noqa: PLC0415 - loads the lists

    try:
        engine = default_engine()
    except (ListsNotFound, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(engine.score_pair(args.name1, args.name2).to_dict(), ensure_ascii=False, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="moncore", description="MonCore kernel command line")
    root.add_argument("--version", action="version", version=f"moncore {__version__}")
    commands = root.add_subparsers(dest="command", required=True)

    admin = commands.add_parser("admin", help="operator actions").add_subparsers(dest="action", required=True)
    key = admin.add_parser("create-key", help="issue an admin API key (shown once)")
    key.add_argument("--name", required=True)
    key.add_argument("--role", default="admin", choices=["viewer", "compliance_officer", "operator", "admin"])
    key.set_defaults(run=_create_admin_key)

    money = commands.add_parser("money", help="money helpers").add_subparsers(dest="action", required=True)
    fmt = money.add_parser("format", help="minor units -> decimal string")
    fmt.add_argument("amount_minor")
    fmt.add_argument("currency")
    fmt.set_defaults(run=_format_money)

    screening = commands.add_parser("screening", help="sanctions screening").add_subparsers(
        dest="action", required=True
    )
    score = screening.add_parser("score", help="print the engine's score and explanation for one pair of names")
    score.add_argument("name1", help="the name as screened")
    score.add_argument("name2", help="the name as listed")
    score.set_defaults(run=_screening_score)

    jobs = commands.add_parser("jobs", help="scheduled jobs").add_subparsers(dest="action", required=True)
    run = jobs.add_parser("run", help="run a scheduled job for one tenant now")
    run.add_argument(
        "job",
        choices=["expire_holds", "snapshot", "rebuild_verify", "rebuild_restore", "rescreen", "tier_enforcement"],
    )
    run.add_argument("--tenant", required=True, help="tenant id")
    run.add_argument("--date", help="snapshot day YYYY-MM-DD (default: the last closed UTC day)")
    run.add_argument("--stack-file", help="local stack state file (default $MONCORE_STATE_DIR/stack.json)")
    run.set_defaults(run=_run_job)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
