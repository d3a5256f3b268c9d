"""`moncore` command line (API.md "Command line"). Subcommands of later capabilities register here too.

moncore admin create-key --name NAME [--role admin]   issue an admin API key (operator bootstrap; prints it once)
moncore money format AMOUNT_MINOR CURRENCY            render minor units as the API's decimal string
moncore screening score NAME1 NAME2                   the screening engine's score (0..1) and explanation for a pair
moncore statements parse FILE                         parse a camt.053 / camt.054 / MT940 file: one JSON object per
                                                      entry and per balance (docs/reconciliation.md); 2 if malformed
moncore jobs run JOB --tenant T [--date D]            run a scheduled job (expire_holds, snapshot, rebuild_verify,
                                                      rebuild_restore, rescreen, tier_enforcement, aml_sweep) for one
                                                      tenant and print its report as JSON; `settlement` starts the
                                                      state machine and follows it with a progress bar

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


WORKFLOWS = ("settlement",)  # jobs that are state machines (Step Functions), not Jobs-function runs


def _run_job(args: argparse.Namespace) -> int:
    try:
        _use_stack_environment(args.stack_file)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.job in WORKFLOWS:
        return _run_workflow(args)
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


def _run_workflow(args: argparse.Namespace) -> int:
    """Start the job's state machine (the stack's `moncore-<env>-<job>`) and follow it with a progress bar on stderr
    until it ends; prints the execution's output (or its error) as JSON. Exit 0 succeeded, 1 failed."""
    import time  # noqa: PLC0415

    import boto3  # noqa: PLC0415

    client = boto3.client("stepfunctions")
    prefix = os.environ.get("MONCORE_LEDGER_TABLE", "moncore-sandbox-ledger").rsplit("-", 1)[0]
    machines = {m["name"]: m["stateMachineArn"] for m in client.list_state_machines()["stateMachines"]}
    arn = machines.get(f"{prefix}-{args.job}")
    if arn is None:
        print(f"error: no state machine {prefix}-{args.job} (is the stack running?)", file=sys.stderr)
        return 2
    payload = {"tenant_id": args.tenant, "date": args.date}
    execution = client.start_execution(
        stateMachineArn=arn, name=f"cli-{args.job}-{int(time.time() * 1000)}", input=json.dumps(payload)
    )["executionArn"]
    started = time.monotonic()
    while True:
        described = client.describe_execution(executionArn=execution)
        events = client.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        _progress(args.job, events, time.monotonic() - started)
        if described["status"] != "RUNNING":
            print(file=sys.stderr)
            break
        time.sleep(0.5)
    if described["status"] == "SUCCEEDED":
        print(json.dumps(json.loads(described.get("output") or "null"), indent=2))
        return 0
    print(json.dumps({"status": described["status"], "error": described.get("error"), "cause": described.get("cause")}))
    return 1


def _progress(job: str, events: list[dict[str, object]], elapsed_s: float) -> None:
    """One line, redrawn: Map iterations done out of started (the batches), elapsed time and an ETA."""
    started = sum(1 for e in events if e.get("type") == "MapIterationStarted")
    done = sum(1 for e in events if e.get("type") == "MapIterationSucceeded")
    total = max(started, 1)
    width = 30
    filled = int(width * done / total)
    eta = f"{elapsed_s / done * (total - done):.0f}s" if done and done < total else "-"
    bar = "#" * filled + "." * (width - filled)
    print(f"\r{job} [{bar}] {done}/{started} batches, {elapsed_s:.0f}s elapsed, eta {eta}", end="", file=sys.stderr)


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


def _statements_parse(args: argparse.Namespace) -> int:
    """Every entry and balance of a statement file as JSON lines. The file is read twice: first validated to its end,
    then printed, so a malformed file prints nothing on stdout (no partial statement to mistake for a whole one)."""
    from moncore.domain.errors import StatementMalformed  # noqa: PLC0415
    from moncore.reconciliation.statements import parse_statement  # noqa: PLC0415 - lxml only when needed

    try:
        for _ in parse_statement(args.file):
            pass
        for record in parse_statement(args.file):
            print(json.dumps(record.to_dict(), ensure_ascii=False))
    except StatementMalformed as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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

    statements = commands.add_parser("statements", help="bank statements").add_subparsers(dest="action", required=True)
    parse = statements.add_parser("parse", help="print a camt.053/camt.054/MT940 file's entries and balances as JSON")
    parse.add_argument("file", help="the statement file")
    parse.set_defaults(run=_statements_parse)

    jobs = commands.add_parser("jobs", help="scheduled jobs").add_subparsers(dest="action", required=True)
    run = jobs.add_parser("run", help="run a scheduled job for one tenant now")
    run.add_argument(
        "job",
        choices=[
            "expire_holds",
            "snapshot",
            "rebuild_verify",
            "rebuild_restore",
            "rescreen",
            "tier_enforcement",
            "aml_sweep",
            *WORKFLOWS,
        ],
    )
    run.add_argument("--tenant", required=True, help="tenant id")
    run.add_argument("--date", help="snapshot or settlement day YYYY-MM-DD (default: the last closed UTC day)")
    run.add_argument("--stack-file", help="local stack state file (default $MONCORE_STATE_DIR/stack.json)")
    run.set_defaults(run=_run_job)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
