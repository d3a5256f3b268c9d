"""The local scheduler (infra/scheduler.py): expression parsing, next fire times in UTC, schedules read from the
template (the real one included, so an expression the scheduler cannot honour fails CI), the timetable and the thread.

Function invocations go through a recording `invoke` here (no processes); tests/integration/test_local_scheduler.py
runs the real jobs function in its worker process.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from infra.resources import name_resources
from infra.scheduler import (
    DailyCron,
    Rate,
    ScheduleError,
    Scheduler,
    load_schedules,
    options_from_environ,
    parse_expression,
)
from infra.template import ResolveContext, evaluate_conditions, load_template, parameter_values

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_expressions_parse_to_their_period(expression: str, period: timedelta) -> None:
    assert parse_expression(expression) == Rate(expression, period)


@pytest.mark.parametrize(
    ("expression", "hour", "minute"),
    [("cron(15 0 * * ? *)", 0, 15), ("cron(45 1 * * ? *)", 1, 45), ("cron(0 23 ? * * *)", 23, 0)],
)
def test_daily_crons_parse_to_their_time_of_day(expression: str, hour: int, minute: int) -> None:
    assert parse_expression(expression) == DailyCron(expression, hour, minute)


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",  # AWS: singular for 1
        "rate(5 minute)",  # plural otherwise
        "rate(0 minutes)",
        "rate(30 seconds)",
        "rate(2 weeks)",
        "rate(five minutes)",
        "rate(5  minutes)",
        "cron(15 0 * * ?)",  # 5 fields: Unix cron, not AWS
        "cron(*/5 * * * ? *)",
        "cron(0/15 1 * * ? *)",
        "cron(0 1,13 * * ? *)",
        "cron(0 9 ? * MON-FRI *)",  # a day-of-week
        "cron(0 9 1 * ? *)",  # a day-of-month
        "cron(0 9 * JAN ? *)",
        "cron(0 9 * * ? 2031)",
        "cron(0 9 * * * *)",  # AWS requires '?' in one day field
        "cron(0 9 ? * ? *)",
        "cron(60 0 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(-1 0 * * ? *)",
        "at(2030-01-01T00:00:00)",
        "every 5 minutes",
        "",
    ],
)
def test_anything_else_is_refused_naming_the_expression(expression: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        parse_expression(expression)
    assert repr(expression) in str(refused.value)


# ---------------------------------------------------------------- next fire times


def test_a_daily_cron_fires_next_at_its_time_today_or_else_tomorrow() -> None:
    snapshots = parse_expression("cron(15 0 * * ? *)")
    assert snapshots.next_after(at("2030-03-01T00:14:59.999999+00:00"), T0) == at("2030-03-01T00:15:00+00:00")
    assert snapshots.next_after(at("2030-03-01T00:15:00+00:00"), T0) == at("2030-03-02T00:15:00+00:00")  # strictly
    assert snapshots.next_after(at("2030-03-01T00:15:00.000001+00:00"), T0) == at("2030-03-02T00:15:00+00:00")
    assert snapshots.next_after(at("2030-03-01T23:59:59.999999+00:00"), T0) == at("2030-03-02T00:15:00+00:00")
    assert snapshots.next_after(at("2030-03-02T00:00:00+00:00"), T0) == at("2030-03-02T00:15:00+00:00")


def test_a_daily_cron_crosses_month_year_and_leap_day_boundaries() -> None:
    verify = parse_expression("cron(45 1 * * ? *)")
    assert verify.next_after(at("2030-12-31T02:00:00+00:00"), T0) == at("2031-01-01T01:45:00+00:00")
    assert verify.next_after(at("2028-02-28T23:00:00+00:00"), T0) == at("2028-02-29T01:45:00+00:00")
    assert verify.next_after(at("2030-04-30T01:45:00+00:00"), T0) == at("2030-05-01T01:45:00+00:00")


def test_crons_are_utc_whatever_the_offset_of_the_instant_given() -> None:
    snapshots = parse_expression("cron(15 0 * * ? *)")
    paris_summer = timezone(timedelta(hours=2))
    # 01:30 in Paris (summer) is 23:30 UTC the day before: the next 00:15 UTC is 45 minutes later.
    fired = snapshots.next_after(datetime(2030, 7, 2, 1, 30, tzinfo=paris_summer), T0)
    assert fired == at("2030-07-02T00:15:00+00:00") and fired.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        snapshots.next_after(datetime(2030, 7, 2, 1, 30), T0)  # naive: refused


def test_a_rate_fires_whole_periods_after_its_anchor_strictly_after_now() -> None:
    every_5 = parse_expression("rate(5 minutes)")
    assert every_5.next_after(T0, T0) == T0 + timedelta(minutes=5)  # first run: one period after the start
    assert every_5.next_after(T0 - timedelta(hours=1), T0) == T0 + timedelta(minutes=5)
    assert every_5.next_after(T0 + timedelta(minutes=4, seconds=59), T0) == T0 + timedelta(minutes=5)
    assert every_5.next_after(T0 + timedelta(minutes=5), T0) == T0 + timedelta(minutes=10)
    assert every_5.next_after(T0 + timedelta(minutes=17, microseconds=1), T0) == T0 + timedelta(minutes=20)
    anchor = at("2030-12-31T23:58:00+00:00")
    assert every_5.next_after(anchor + timedelta(minutes=1), anchor) == at("2031-01-01T00:03:00+00:00")
    daily = parse_expression("rate(1 day)")
    assert daily.next_after(anchor + timedelta(days=3), anchor) == anchor + timedelta(days=4)


# ---------------------------------------------------------------- schedules from templates


def _ctx(template: dict[str, Any], **overrides: str) -> ResolveContext:
    ctx = ResolveContext(parameter_values(template, overrides))
    evaluate_conditions(template, ctx)
    return name_resources(template, ctx)


def test_every_schedule_event_of_the_real_template_is_honoured(template_path: Path) -> None:
    template = load_template(template_path)
    declared = {
        (logical_id, event_name)
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
        for event_name, event in (resource.get("Properties", {}).get("Events") or {}).items()
        if "Schedule" in str(event.get("Type"))
    }
    schedules = load_schedules(template, _ctx(template, EnvironmentName="sandbox"))  # raises on anything unsupported
    assert {(s.function, s.event) for s in schedules} == declared
    by_event = {s.event: s for s in schedules}
    assert by_event["ExpireHolds"].trigger == Rate("rate(5 minutes)", timedelta(minutes=5))
    assert by_event["ExpireHolds"].input == {"job": "expire_holds"}
    assert by_event["ExpireHolds"].name == "moncore-sandbox-expire-holds"  # !Sub resolved
    assert by_event["DailySnapshots"].trigger == DailyCron("cron(15 0 * * ? *)", 0, 15)
    jobs = [s for s in schedules if s.target == "function"]
    assert all(s.enabled and isinstance(s.input, dict) and s.input.get("job") for s in jobs)
    # A state machine's schedule starts an execution with its Input (every tenant, the last closed day).
    assert by_event["DailySettlement"].target == "state_machine"
    assert by_event["DailySettlement"].input == {"tenant_id": None, "date": None}


SCHEDULES = """
Parameters:
  EnvironmentName: {Type: String, Default: test}
Conditions:
  Never: !Equals [!Ref EnvironmentName, nope]
Resources:
  JobsFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${EnvironmentName}-jobs"
      CodeUri: jobs/
      Handler: app.lambda_handler
      Events:
        Sweep:
          Type: ScheduleV2
          Properties:
            Name: !Sub "${EnvironmentName}-sweep"
            ScheduleExpression: rate(5 minutes)
            Input: !Sub '{"job": "sweep", "env": "${EnvironmentName}"}'
        Nightly:
          Type: ScheduleV2
          Properties: {ScheduleExpression: "cron(30 2 * * ? *)", ScheduleExpressionTimezone: UTC, Input: '{"job": "n"}'}
        Paused:
          Type: ScheduleV2
          Properties: {ScheduleExpression: rate(1 minute), State: DISABLED, Input: '{"job": "paused"}'}
        OldStyle:
          Type: Schedule
          Properties: {Schedule: rate(1 hour), Enabled: false}
        Api: {Type: Api, Properties: {Path: /x, Method: GET}}
  OtherFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: other/
      Handler: app.lambda_handler
      Events:
        Nightly: {Type: Schedule, Properties: {Schedule: rate(2 hours)}}
  SkippedFunction:
    Type: AWS::Serverless::Function
    Condition: Never
    Properties:
      CodeUri: skipped/
      Handler: app.lambda_handler
      Events:
        Bad: {Type: ScheduleV2, Properties: {ScheduleExpression: "cron(* * * * ? *)"}}
"""


@pytest.fixture
def schedules_template(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    path.write_text(SCHEDULES)
    return load_template(path)


def test_schedules_resolve_intrinsics_honour_state_and_skip_false_conditions(
    schedules_template: dict[str, Any],
) -> None:
    schedules = {s.id: s for s in load_schedules(schedules_template, _ctx(schedules_template))}
    assert list(schedules) == [
        "JobsFunction.Sweep",
        "JobsFunction.Nightly",
        "JobsFunction.Paused",
        "JobsFunction.OldStyle",
        "OtherFunction.Nightly",
    ]
    sweep = schedules["JobsFunction.Sweep"]
    assert (sweep.name, sweep.input, sweep.enabled) == ("test-sweep", {"job": "sweep", "env": "test"}, True)
    assert sweep.arn == "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/test-sweep"
    assert not schedules["JobsFunction.Paused"].enabled
    assert not schedules["JobsFunction.OldStyle"].enabled
    rule = schedules["OtherFunction.Nightly"]
    assert rule.enabled and rule.input is None
    event = rule.payload(at("2030-03-01T02:00:00+00:00"))  # an EventBridge rule without Input: the Scheduled Event
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2030-03-01T02:00:00Z" and event["resources"] == [rule.arn]


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"ScheduleExpression": "cron(0/5 * * * ? *)"}, "'cron(0/5 * * * ? *)'"),
        ({"ScheduleExpression": "rate(1 minute)", "ScheduleExpressionTimezone": "Europe/Paris"}, "Europe/Paris"),
        ({"ScheduleExpression": "rate(1 minute)", "StartDate": "2030-01-01T00:00:00Z"}, "StartDate"),
        ({"ScheduleExpression": "rate(1 minute)", "State": "PAUSED"}, "PAUSED"),
        ({"ScheduleExpression": "rate(1 minute)", "Input": "{job: x}"}, "not JSON"),
        ({"Input": "{}"}, "needs ScheduleExpression"),
    ],
)
def test_a_schedule_the_scheduler_cannot_honour_fails_naming_function_and_event(
    schedules_template: dict[str, Any], properties: dict[str, Any], message: str
) -> None:
    events = schedules_template["Resources"]["OtherFunction"]["Properties"]["Events"]
    events["Broken"] = {"Type": "ScheduleV2", "Properties": properties}
    with pytest.raises(ScheduleError, match="OtherFunction event Broken") as refused:
        load_schedules(schedules_template, _ctx(schedules_template))
    assert message in str(refused.value)


# ---------------------------------------------------------------- the scheduler


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """Stands in for the worker-process invocation; a job named in `failing` raises like a failing function."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failing = failing
        self.lock = threading.Lock()

    def __call__(self, function: str, event: Any) -> Any:
        with self.lock:
            self.calls.append((function, event))
        if isinstance(event, dict) and event.get("job") in self.failing:
            raise RuntimeError(f"job {event['job']} exploded")
        return {"ran": event}

    def jobs(self) -> list[Any]:
        with self.lock:
            return [event.get("job") if isinstance(event, dict) else None for _, event in self.calls]


def test_due_runs_follow_the_timetable_and_missed_occurrences_are_coalesced(
    schedules_template: dict[str, Any],
) -> None:
    clock, recorder = Clock(), Recorder()
    scheduler = Scheduler(schedules_template, _ctx(schedules_template), invoke=recorder, clock=clock)
    assert scheduler.due() == []
    assert scheduler.next_run("Sweep") == T0 + timedelta(minutes=5)
    assert scheduler.next_run("JobsFunction.Nightly") == at("2030-03-02T02:30:00+00:00")
    assert scheduler.next_run("Paused") is None  # State: DISABLED never fires

    clock.now = T0 + timedelta(minutes=5)
    assert [(d.schedule.id, d.at) for d in scheduler.due()] == [("JobsFunction.Sweep", T0 + timedelta(minutes=5))]
    runs = scheduler.run_due()
    assert [(r.schedule, r.ok, r.result) for r in runs] == [
        ("JobsFunction.Sweep", True, {"ran": {"job": "sweep", "env": "test"}})
    ]
    assert recorder.calls == [("JobsFunction", {"job": "sweep", "env": "test"})]
    assert scheduler.due() == [] and scheduler.run_due() == []  # not twice for one occurrence
    assert scheduler.next_run("Sweep") == T0 + timedelta(minutes=10)

    clock.now = T0 + timedelta(minutes=27)  # the machine slept through 10, 15, 20 and 25: one run, not four
    assert [r.schedule for r in scheduler.run_due()] == ["JobsFunction.Sweep"]
    assert scheduler.next_run("Sweep") == T0 + timedelta(minutes=30)

    clock.now = at("2030-03-02T02:30:00+00:00")  # the nightly cron, the hourly rule and the sweep are all due
    assert sorted(r.schedule for r in scheduler.run_due()) == [
        "JobsFunction.Nightly",
        "JobsFunction.Sweep",
        "OtherFunction.Nightly",
    ]
    assert scheduler.next_run("JobsFunction.Nightly") == at("2030-03-03T02:30:00+00:00")
    assert "paused" not in recorder.jobs()


def test_a_failing_job_is_recorded_and_the_next_runs_still_happen(
    schedules_template: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    clock, recorder = Clock(), Recorder(failing=("sweep",))
    scheduler = Scheduler(schedules_template, _ctx(schedules_template), invoke=recorder, clock=clock)
    clock.now = T0 + timedelta(minutes=5)
    with caplog.at_level("ERROR", logger="infra.scheduler"):
        (failed,) = scheduler.run_due()
    assert not failed.ok and failed.error == "RuntimeError: job sweep exploded" and failed.due_at == clock.now
    assert "JobsFunction.Sweep" in caplog.text and "job sweep exploded" in caplog.text
    clock.now = T0 + timedelta(minutes=10)
    assert [r.ok for r in scheduler.run_due()] == [False]  # still scheduled after a failure
    assert scheduler.trigger("JobsFunction.Nightly").ok
    assert [(r.schedule, r.ok) for r in scheduler.runs()] == [
        ("JobsFunction.Sweep", False),
        ("JobsFunction.Sweep", False),
        ("JobsFunction.Nightly", True),
    ]


def test_trigger_runs_a_schedule_by_event_id_or_physical_name_without_moving_the_timetable(
    schedules_template: dict[str, Any],
) -> None:
    recorder = Recorder()
    scheduler = Scheduler(schedules_template, _ctx(schedules_template), invoke=recorder, clock=Clock())
    for name in ("Sweep", "JobsFunction.Sweep", "test-sweep"):
        run = scheduler.trigger(name)
        assert run.ok and run.due_at is None and run.schedule == "JobsFunction.Sweep"
    assert scheduler.trigger("Paused").result == {"ran": {"job": "paused"}}  # by hand, a disabled one runs too
    assert scheduler.next_run("Sweep") == T0 + timedelta(minutes=5)
    with pytest.raises(ScheduleError, match="several schedules"):
        scheduler.trigger("Nightly")  # JobsFunction.Nightly and OtherFunction.Nightly
    with pytest.raises(ScheduleError, match=r"no schedule named 'Nope' \(known: JobsFunction.Sweep"):
        scheduler.trigger("Nope")
    assert len(recorder.calls) == 4


def test_the_thread_fires_due_runs_on_a_sped_up_clock_survives_failures_and_stops(
    schedules_template: dict[str, Any],
) -> None:
    recorder = Recorder(failing=("sweep",))
    # rate(1 minute) 6000 times faster: every 10 ms (the Paused one stays paused; the others are hours away).
    events = schedules_template["Resources"]["JobsFunction"]["Properties"]["Events"]
    events["Fast"] = {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": "rate(1 minute)", "Input": '"fast"'}}
    events["Sweep"]["Properties"]["ScheduleExpression"] = "rate(2 minutes)"
    scheduler = Scheduler(schedules_template, _ctx(schedules_template), invoke=recorder, speed=6000)
    with scheduler:
        assert scheduler.running
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (recorder.jobs().count("sweep") < 3 or len(recorder.calls) < 9):
            time.sleep(0.01)
    assert not scheduler.running
    assert recorder.jobs().count("sweep") >= 3  # failing every time, and still fired again
    assert [event for _, event in recorder.calls].count("fast") >= 5
    assert "paused" not in recorder.jobs()
    fired = len(recorder.calls)
    time.sleep(0.1)
    assert len(recorder.calls) == fired  # nothing fires after stop()
    assert any(not r.ok for r in scheduler.runs()) and any(r.ok for r in scheduler.runs())


def test_a_disabled_scheduler_never_fires_but_can_still_be_triggered(schedules_template: dict[str, Any]) -> None:
    recorder = Recorder()
    scheduler = Scheduler(schedules_template, _ctx(schedules_template), invoke=recorder, speed=60_000, enabled=False)
    with scheduler:
        assert not scheduler.running
        time.sleep(0.1)  # 100 virtual minutes
        assert recorder.calls == []
        assert scheduler.trigger("Sweep").ok
    assert len(recorder.calls) == 1


def test_options_from_the_environment() -> None:
    assert options_from_environ({}) == options_from_environ({"MONCORE_SCHEDULER": "on"})
    assert options_from_environ({}).enabled and options_from_environ({}).speed == 1
    for off in ("off", "OFF", "0", "false", "no"):
        assert not options_from_environ({"MONCORE_SCHEDULER": off}).enabled
    assert options_from_environ({"MONCORE_SCHEDULER_SPEED": "60"}).speed == 60
    for bad in ("0", "-2", "fast", "nan", "inf"):
        with pytest.raises(ValueError, match="MONCORE_SCHEDULER_SPEED"):
            options_from_environ({"MONCORE_SCHEDULER_SPEED": bad})
    with pytest.raises(ValueError, match="speed"):
        Scheduler({}, ResolveContext({}), speed=0)
