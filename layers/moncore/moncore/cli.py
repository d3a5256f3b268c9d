"""`moncore` command line (API.md "Command line"). Subcommands of later capabilities register here too.

moncore admin create-key --name NAME [--role admin]   issue an admin API key (operator bootstrap; prints it once)
moncore money format AMOUNT_MINOR CURRENCY            render minor units as the API's decimal string
"""

from __future__ import annotations

import argparse
import json
import sys

from moncore import __version__


def _create_admin_key(args: argparse.Namespace) -> int:
    from moncore.tenancy.service import TenancyService  # noqa: PLC0415 - needs table settings from the environment

    issued = TenancyService().create_admin_key(name=args.name, role=args.role, created_by="cli:operator")
    print(json.dumps({"key_id": issued.key_id, "api_key": issued.api_key, "role": args.role}))
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
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
