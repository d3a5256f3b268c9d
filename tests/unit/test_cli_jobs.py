"""`moncore jobs run` offers exactly the jobs the Jobs function runs (the two lists live apart: the CLI must not import
the kernel before it has pointed it at a stack)."""

from __future__ import annotations

from moncore.cli import parser


def test_the_cli_offers_every_scheduled_job() -> None:
    from moncore.cli import JOB_ALIASES, WORKFLOWS
    from moncore.ledger.jobs import JOBS

    jobs = next(a for a in parser()._actions if a.dest == "command").choices["jobs"]  # type: ignore[union-attr]
    run = next(a for a in jobs._actions if a.dest == "action").choices["run"]
    job = next(a for a in run._actions if a.dest == "job")
    assert list(job.choices) == [*JOBS, *WORKFLOWS, *JOB_ALIASES]
    assert set(JOB_ALIASES.values()) <= set(JOBS)  # an alias names a job that exists
