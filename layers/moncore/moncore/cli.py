"""`moncore` command line (API.md "Command line"). Subcommands of later capabilities register here too.

moncore admin create-key --name NAME [--role admin]   issue an admin API key (operator bootstrap; prints it once)
moncore money format AMOUNT_MINOR CURRENCY            render minor units as the API's decimal string
moncore screening score NAME1 NAME2                   the screening engine's score (0..1) and explanation for a pair
moncore statements parse FILE                         parse a camt.053 / camt.054 / MT940 file: one JSON object per
                                                      entry and per balance (docs/reconciliation.md); 2 if malformed
moncore jobs run JOB --tenant T [--date D]            run a scheduled job (expire_holds, snapshot, rebuild_verify,
                                                      rebuild_restore, rescreen, tier_enforcement, aml_sweep, seal,
                                                      verify_chain) for one tenant and print its report as JSON (exit
                                                      1 when it fails, e.g. a broken chain); `settlement` starts the
                                                      state machine and follows it with a progress bar
moncore verify BUNDLE.zip [--public-key FILE]         check an evidence bundle offline (no AWS, no network): exit 0
                                                      when every check holds, else 1 naming the first failure
moncore exports show ID [--follow]                    an export's or evidence bundle's record; --follow redraws its
                                                      progress until it is READY or FAILED (exit 1 when FAILED)

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
from typing import Any

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


WORKFLOWS = ("settlement", "reconciliation")  # jobs that are state machines (Step Functions), not Jobs-function runs
# Names the API contract (../shared/API.md: "seal, verify") uses for jobs whose kernel name says more.
JOB_ALIASES = {"verify": "verify_chain"}


def _run_job(args: argparse.Namespace) -> int:
    try:
        _use_stack_environment(args.stack_file)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.job = JOB_ALIASES.get(args.job, args.job)
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


def _verify(args: argparse.Namespace) -> int:
    """Offline: imports the verifier (standard library, cryptography, MonCore's pure formats) and nothing that talks
    to AWS."""
    from moncore.audit.verifier import describe, verify_bundle  # noqa: PLC0415

    key = None
    if args.public_key:
        try:
            key = Path(args.public_key).read_bytes()
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    report = verify_bundle(args.bundle, key)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.failure is not None:
        print(describe(report.failure))
    else:
        print(_verified(report.summary))
    return 0 if report.ok else 1


def _verified(summary: dict[str, Any]) -> str:
    blocks = summary["blocks"]
    key = summary["public_key"]
    lines = [
        f"OK {summary['bundle']} (tenant {summary['tenant_id']}, scope [{summary['scope']['from']}, "
        f"{summary['scope']['to']})): every check holds",
        *(f"  {name}: {rows} rows, SHA-256 and row count as signed" for name, rows in summary["rows"].items()),
        f"  blocks {blocks['first_seq']}..{blocks['last_seq']} ({blocks['count']}, head {blocks['head_hash']}): "
        "chained, signed, Merkle roots over their leaves"
        if blocks["count"]
        else "  no blocks (no sealed item in the scope)",
        f"  sealed items of the scope, each exported once: {summary['sealed_items_in_scope']}",
        f"  manifest signature verified with the {key['source']} public key, SHA-256 {key['sha256']}",
    ]
    if key["source"] == "bundle":
        lines.append(
            "  (pass --public-key with the key MonCore publishes to check the bundle's origin, not only its integrity)"
        )
    return "\n".join(lines)


def _show_export(args: argparse.Namespace) -> int:
    """The record (GET's answer) as JSON; with --follow a progress line is redrawn on stderr until the export is
    READY or FAILED."""
    try:
        _use_stack_environment(args.stack_file)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import time  # noqa: PLC0415

    from moncore.audit.exports import FAILED, READY, ExportService  # noqa: PLC0415 - after the environment is set
    from moncore.domain.errors import DomainError  # noqa: PLC0415

    service = ExportService()
    started = time.monotonic()
    while True:
        try:
            record = service.get(args.export_id, origin=None)
        except DomainError as exc:
            print(f"error: {exc.detail}", file=sys.stderr)
            return 2
        if not args.follow or record["status"] in (READY, FAILED):
            break
        _export_progress(record, time.monotonic() - started)
        time.sleep(0.5)
    if args.follow:
        _export_progress(record, time.monotonic() - started)
        print(file=sys.stderr)
    print(json.dumps(record, indent=2))
    return 1 if record["status"] == FAILED else 0


def _export_progress(record: dict[str, Any], elapsed_s: float) -> None:
    progress = record.get("progress") or {}
    total = max(int(progress.get("steps_total") or 1), 1)
    done = int(progress.get("steps_done") or 0)
    width = 30
    bar = "#" * int(width * done / total) + "." * (width - int(width * done / total))
    step = progress.get("step") or "waiting"
    print(
        f"\r{record['id']} {record['status']} [{bar}] {done}/{total} steps, {step}, "
        f"{int(progress.get('rows') or 0):,} rows, {elapsed_s:.0f}s",
        end="",
        file=sys.stderr,
    )


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
    then printed, so a malformed file prints nothing on stdout (no partial statement to mistake for a whole one).

    A reader that closes the pipe early (`moncore statements parse F | head -1`) has what it asked for: the command
    ends quietly with 0 instead of reporting the closed pipe as an error."""
    from moncore.domain.errors import StatementMalformed  # noqa: PLC0415
    from moncore.reconciliation.statements import parse_statement  # noqa: PLC0415 - lxml only when needed

    try:
        for _ in parse_statement(args.file):
            pass
        write = sys.stdout.write
        for record in parse_statement(args.file):
            write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except StatementMalformed as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null after the reader closed it, so the interpreter's final flush of what is still
    buffered does not raise BrokenPipeError again at exit (the recipe of the Python signal module documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (an in-process capture): nothing to flush
        pass


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
            "seal",
            "verify_chain",
            *WORKFLOWS,
            *JOB_ALIASES,
        ],
    )
    run.add_argument("--tenant", required=True, help="tenant id")
    run.add_argument("--date", help="snapshot or settlement day YYYY-MM-DD (default: the last closed UTC day)")
    run.add_argument("--stack-file", help="local stack state file (default $MONCORE_STATE_DIR/stack.json)")
    run.set_defaults(run=_run_job)

    verify = commands.add_parser("verify", help="verify an evidence bundle offline (no AWS, no network)")
    verify.add_argument("bundle", help="the bundle ZIP")
    verify.add_argument("--public-key", help="MonCore's public key (PEM or DER) to trust instead of the bundle's")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(run=_verify)

    exports = commands.add_parser("exports", help="exports and evidence bundles").add_subparsers(
        dest="action", required=True
    )
    show = exports.add_parser("show", help="an export's record; --follow shows its progress until it ends")
    show.add_argument("export_id")
    show.add_argument("--follow", action="store_true", help="redraw the progress until READY or FAILED")
    show.add_argument("--stack-file", help="local stack state file (default $MONCORE_STATE_DIR/stack.json)")
    show.set_defaults(run=_show_export)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
