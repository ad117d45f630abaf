"""Kubeflow's cron: six fields, seconds first, checked here before anything is sent.

The KFP API server and its scheduled-workflow controller parse a recurring run's cron with
robfig/cron v1.2.0 `cron.Parse` (`backend/src/apiserver/server/api_converter.go`,
`backend/src/crd/controller/scheduledworkflow/util/cron_schedule.go`; go.mod pins v1.2.0).
That parser reads *seconds first* and also takes five fields without complaint, still
seconds first: the crontab line `0 2 * * *` becomes "second 0 of minute 2 of every hour"
(kfp#5014). So this module accepts exactly six fields and converts a five-field crontab
line only when asked to (`from_crontab`), saying what it did.

The grammar follows robfig/cron v1.2.0 `parser.go` (`getField`, `getRange`,
`parseIntOrName`, `mustParseInt`) and `spec.go` (`bounds`, `dayMatches`): per field a
comma-separated list of `*` or `?` (the whole range), `N`, `N-M`, each optionally `/STEP`
(`N/STEP` means `N-max/STEP`); three-letter names for months (JAN-DEC) and days of the
week (SUN-SAT), case-insensitive; day of week 0-6 (0 = Sunday). Where robfig silently
ignores text (`*-5` is read as `*`, empty list items are skipped) or accepts a line that
never fires (`0 0 0 31 2 *`), this module refuses it: each of those is a mistake.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, NoReturn, Optional

from pipeline.errors import UsageError

FORMAT = ("six fields, seconds first: second minute hour day-of-month month day-of-week "
          "(e.g. '0 0 2 * * *' = every day at 02:00)")

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    start=1)}
_DAYS = {name: number for number, name in enumerate(
    ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# The longest each month gets; robfig looks five years ahead, so 29 February happens.
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# robfig's descriptors (parseDescriptor), written out as the six fields they stand for.
_DESCRIPTORS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *",
                "@monthly": "0 0 0 1 * *", "@weekly": "0 0 0 * * 0",
                "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
                "@hourly": "0 0 * * * *"}
_NUMBER = re.compile(r"^\+?[0-9]+$")  # Go's strconv.Atoi, minus the sign '-' cannot reach


class CronError(UsageError, ValueError):
    """A cron line KFP would refuse, or would accept but read differently than meant."""


class CrontabLineError(CronError):
    """Five fields: a crontab line. `converted` is its six-field equivalent, when it has one."""

    def __init__(self, message: str, converted: Optional[str]):
        super().__init__(message)
        self.converted = converted


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)


_FIELDS = (_Field("second", 0, 59), _Field("minute", 0, 59), _Field("hour", 0, 23),
           _Field("day-of-month", 1, 31), _Field("month", 1, 12, _MONTHS),
           _Field("day-of-week", 0, 6, _DAYS))


@dataclass(frozen=True)
class _Parsed:
    values: frozenset[int]
    star: bool  # robfig's starBit: `*` or `?` appeared, which changes how days combine


def validate(expression: str) -> str:
    """The six-field cron line, single-spaced, or CronError saying what is wrong and why.

    Five fields raise CrontabLineError, which carries the explicit conversion.

    Raises:
        CrontabLineError: five fields, a crontab line KFP would read seconds first; its
            `converted` is the six-field line meant (None when it has none).
        CronError: the line is empty, a descriptor (`@daily`...), has another count of
            fields than six, a field that robfig/cron would refuse or silently misread
            (out of range, an empty list item, a zero or non-numeric step, a bad name),
            or a day of month no chosen month has (a schedule that never fires). A
            CronError is a UsageError and a ValueError (so a pydantic validator reports it
            as the key's problem).
    """
    fields = expression.split()
    if not fields:
        raise CronError(f"the cron line is empty; Kubeflow's cron has {FORMAT}")
    if fields[0].startswith("@"):
        raise CronError(_descriptor_problem(expression.strip()))
    if len(fields) == 5:
        raise CrontabLineError(_crontab_problem(fields), _converted_or_none(fields))
    if len(fields) != 6:
        raise CronError(f"'{expression}' has {len(fields)} fields; Kubeflow's cron has {FORMAT}")
    parsed = [_parse_field(text, spec, expression) for text, spec in zip(fields, _FIELDS)]
    _check_days_exist(parsed, expression)
    return " ".join(fields)


def from_crontab(line: str) -> str:
    """A five-field crontab line (minute hour day-of-month month day-of-week) as
    Kubeflow's six fields: second 0 first, and crontab's 7 for Sunday written as 0.

    Raises:
        CronError: the line is a descriptor, has other than five fields, or its six-field
            form fails `validate`.
    """
    fields = line.split()
    if fields and fields[0].startswith("@"):
        raise CronError(_descriptor_problem(line.strip()))
    if len(fields) != 5:
        raise CronError(f"'{line}' is not a crontab line: a crontab line has five fields "
                        "(minute hour day-of-month month day-of-week), it has "
                        f"{len(fields)}")
    return validate(" ".join(["0", *fields[:4], _crontab_day_of_week(fields[4], line)]))


def _parse_field(text: str, spec: _Field, expression: str) -> _Parsed:
    values: set[int] = set()
    star = False
    for item in text.split(","):
        if not item:
            _fail(expression, spec, text, "an empty item in the list")
        item_values, item_star = _parse_item(item, spec, expression, text)
        values |= item_values
        star = star or item_star
    return _Parsed(frozenset(values), star)


def _parse_item(item: str, spec: _Field, expression: str, text: str) -> tuple[set[int], bool]:
    """One robfig `getRange`: `*`/`?`/N/N-M with an optional /STEP."""
    range_part, *steps = item.split("/")
    if len(steps) > 1:
        _fail(expression, spec, text, f"'{item}' has more than one '/'")
    bounds = range_part.split("-")
    if range_part in ("*", "?"):
        start, end, star = spec.low, spec.high, True
    elif bounds[0] in ("*", "?"):
        _fail(expression, spec, text, f"'{item}': '{bounds[0]}' already means the whole "
                                      "range and cannot start a range")
    elif len(bounds) > 2:
        _fail(expression, spec, text, f"'{item}' has more than one '-'")
    else:
        start = _value(bounds[0], spec, expression, text)
        end = _value(bounds[1], spec, expression, text) if len(bounds) == 2 else start
        star = False
    step = 1
    if steps:
        if not _NUMBER.match(steps[0]):
            _fail(expression, spec, text, f"step '{steps[0]}' in '{item}' is not a number")
        step = int(steps[0])
        if step == 0:
            _fail(expression, spec, text, f"step 0 in '{item}': a step must be positive")
        if len(bounds) == 1 and not star:
            end = spec.high  # robfig: "N/step" means "N-max/step"
    if start < spec.low:
        _fail(expression, spec, text, f"{start} is below the minimum {spec.low}")
    if end > spec.high:
        _fail(expression, spec, text, f"{end} is above the maximum {spec.high}"
              + (" (Sunday is 0 or SUN)" if spec.names is _DAYS and end == 7 else ""))
    if start > end:
        _fail(expression, spec, text, f"the range '{item}' starts after it ends")
    return set(range(start, end + 1, step)), star


def _value(token: str, spec: _Field, expression: str, text: str) -> int:
    if token.lower() in spec.names:
        return spec.names[token.lower()]
    if _NUMBER.match(token):
        return int(token)
    names = (f" or a name ({', '.join(n.upper() for n in list(spec.names)[:3])}, ...)"
             if spec.names else "")
    _fail(expression, spec, text, f"'{token}' is not a number{names}")


def _check_days_exist(parsed: list[_Parsed], expression: str) -> None:
    """robfig `dayMatches`: with day-of-week `*`/`?`, only the day of month decides; a day
    of month that no chosen month has (31 in February) would make a schedule that never
    fires, which the server accepts without a word."""
    day_of_month, month, day_of_week = parsed[3], parsed[4], parsed[5]
    if day_of_month.star or not day_of_week.star:
        return
    if not any(day <= _DAYS_IN_MONTH[m - 1] for m in month.values for day in day_of_month.values):
        raise CronError(f"invalid cron '{expression}': day-of-month "
                        f"{sorted(day_of_month.values)} never occurs in month "
                        f"{sorted(month.values)}, so the schedule would never run")


def _crontab_day_of_week(text: str, line: str) -> str:
    """Crontab allows 7 for Sunday, robfig only 0: rewrite the field as an explicit list
    when (and only when) a 7 is in it."""
    sunday_seven = _Field("day-of-week", 0, 7, _DAYS)
    try:
        parsed = _parse_field(text, sunday_seven, line)
    except CronError:
        return text  # validate() explains the problem in Kubeflow's terms
    if 7 not in parsed.values or parsed.star:
        return text
    return ",".join(str(day) for day in sorted({0 if d == 7 else d for d in parsed.values}))


def _crontab_problem(fields: list[str]) -> str:
    reading = ", ".join(f"{spec.name} {text}" for spec, text in zip(_FIELDS, fields))
    return (f"'{' '.join(fields)}' has five fields, like a crontab line, but Kubeflow's cron "
            f"has {FORMAT}; KFP would read these five seconds first ({reading}, any "
            "day-of-week)")


def _converted_or_none(fields: list[str]) -> Optional[str]:
    try:
        return from_crontab(" ".join(fields))
    except CronError:
        return None


def _descriptor_problem(expression: str) -> str:
    known = _DESCRIPTORS.get(expression)
    instead = f"; for {expression} write '{known}'" if known else ""
    return f"'{expression}' is a descriptor; write Kubeflow's cron as {FORMAT}{instead}"


def _fail(expression: str, spec: _Field, text: str, problem: str) -> NoReturn:
    raise CronError(f"invalid cron '{expression}': {spec.name} field '{text}': {problem}")
