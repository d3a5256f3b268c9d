"""`python -m bench` runs every bench with its defaults; `python -m bench NAME [options]` runs one (see NAME --help)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from bench import hot_account, reconciliation, screening, verify

BENCHES: dict[str, Callable[[list[str]], int]] = {
    "hot_account": hot_account.main,
    "screening": screening.main,
    "reconciliation": reconciliation.main,
    "verify": verify.main,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for chatty in ("botocore", "pynamodb", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if not argv:
        return max(bench([]) for bench in BENCHES.values())
    name, *options = argv
    if name not in BENCHES:
        print(f"unknown bench {name!r}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    return BENCHES[name](options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
