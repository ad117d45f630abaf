"""Kubeflow's cron as robfig/cron v1.2.0 `cron.Parse` reads it: six fields, seconds first."""
from __future__ import annotations

import pytest

from pipeline.kubeflow import cron


@pytest.mark.parametrize("line", [
    "0 0 2 * * *",            # every day at 02:00
    "*/15 * * * * *",         # every 15 seconds
    "0 */15 * * * *",         # every 15 minutes
    "0 0 9-17 * * MON-FRI",   # office hours, names as a range
    "0 0 9 ? * mon,wed,fri",  # `?` and lower-case names
    "0 30 4 1 JAN-MAR/2 *",   # named months with a step
    "5/20 * * * * *",         # N/step = N-max/step
    "0 0 0 29 2 *",           # 29 February exists (robfig looks five years ahead)
    "0 0 0 31 2 1",           # with a day-of-week too, either matches: Mondays
    "0,30 0 0 1,15 * ?",
    "  0  0 2 * *   *  ",     # any whitespace between fields
])
def test_valid_six_field_lines_are_accepted(line: str):
    assert cron.validate(line) == " ".join(line.split())


@pytest.mark.parametrize("line, problem", [
    ("60 * * * * *", "second field '60': 60 is above the maximum 59"),
    ("0 0 24 * * *", "hour field '24': 24 is above the maximum 23"),
    ("0 0 0 0 * *", "day-of-month field '0': 0 is below the minimum 1"),
    ("0 0 0 * 13 *", "month field '13': 13 is above the maximum 12"),
    ("0 0 0 * * 7", "7 is above the maximum 6 (Sunday is 0 or SUN)"),
    ("0 0 17-9 * * *", "the range '17-9' starts after it ends"),
    ("0 */0 * * * *", "step 0 in '*/0'"),
    ("0 1-2-3 * * * *", "'1-2-3' has more than one '-'"),
    ("0 1/2/3 * * * *", "'1/2/3' has more than one '/'"),
    ("0 0 0 * * MONDAY", "'MONDAY' is not a number or a name"),
    ("0 0 0 * JAN-FOO *", "'FOO' is not a number"),
    ("0 0 MON * * *", "hour field 'MON': 'MON' is not a number"),  # names: months, days only
    ("0 x * * * *", "'x' is not a number"),
    ("0 5,,10 * * * *", "an empty item in the list"),           # robfig skips it silently
    ("*-5 * * * * *", "'*' already means the whole range"),       # robfig reads it as '*'
    ("0 0 0 31 4 *", "never occurs in month [4]"),              # accepted, never fires
    ("0 0 0 30,31 2 ?", "never occurs in month [2]"),
    ("0 0 0 * * * *", "has 7 fields"),
    ("0 0 0", "has 3 fields"),
    ("", "the cron line is empty"),
])
def test_invalid_lines_are_refused_naming_field_and_problem(line: str, problem: str):
    with pytest.raises(cron.CronError) as raised:
        cron.validate(line)
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)


def test_five_fields_are_refused_with_the_format_and_the_conversion():
    with pytest.raises(cron.CrontabLineError) as raised:
        cron.validate("0 9 * * 1")
    message = str(raised.value)
    assert "has five fields, like a crontab line" in message
    assert "six fields, seconds first: second minute hour day-of-month month day-of-week" in message
    # what the server would make of it, which is why it is refused
    assert "second 0, minute 9, hour *, day-of-month *, month 1" in message
    assert raised.value.converted == "0 0 9 * * 1"


def test_descriptors_are_refused_with_their_six_fields():
    with pytest.raises(cron.CronError, match=r"for @daily write '0 0 0 \* \* \*'"):
        cron.validate("@daily")


@pytest.mark.parametrize("crontab, kubeflow", [
    ("0 2 * * *", "0 0 2 * * *"),
    ("*/5 * * * *", "0 */5 * * * *"),
    ("30 4 * * MON-FRI", "0 30 4 * * MON-FRI"),
    ("0 0 * * 7", "0 0 0 * * 0"),               # crontab's Sunday 7 is robfig's 0
    ("0 0 * * 5-7", "0 0 0 * * 0,5,6"),
])
def test_crontab_lines_are_converted_explicitly(crontab: str, kubeflow: str):
    assert cron.from_crontab(crontab) == kubeflow
    assert cron.validate(kubeflow) == kubeflow


@pytest.mark.parametrize("line, problem", [
    ("0 0 2 * * *", "a crontab line has five fields"),  # six already: not converted twice
    ("0 25 * * *", "hour field '25'"),                  # checked after conversion
    ("@hourly", "for @hourly write '0 0 * * * *'"),
])
def test_conversion_refuses_what_is_not_a_valid_crontab_line(line: str, problem: str):
    with pytest.raises(cron.CronError, match=problem.replace("*", r"\*")):
        cron.from_crontab(line)
