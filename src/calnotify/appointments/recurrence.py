"""HighLevel's ``rrule`` (RFC 5545): parsed, checked and expanded (docs/semantics.md §3a).

An ``RRULE:`` line, optionally followed by ``EXDATE`` lines; the series starts at the
appointment's ``startTime`` (a ``DTSTART`` line is ignored). Expansion is done by
``python-dateutil``'s ``rrule`` (the maintained RFC 5545 implementation in Python), with
the series start as an aware datetime in the location's zone, so occurrences keep their
wall-clock time across DST changes (a weekly 09:00 stays 09:00).

Bounded whatever the rule: ``COUNT`` at most :data:`MAX_COUNT`, no occurrence more than
:data:`MAX_SPAN` after the series start (so even a rule that can never match, such as
February 30th every day, is given up after a bounded search).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH")
# The longest each month can be (February in a leap year).
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MAX_COUNT = 1000
MAX_INTERVAL = 999
MAX_SPAN = timedelta(days=3653)  # ten years
MAX_EXDATES = 1000
_STAMP = re.compile(r"^(\d{8})(?:T(\d{6})(Z?))?$")
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_NUMBER = re.compile(r"^[+-]?\d{1,3}$")


class RecurrenceError(ValueError):
    """The rule cannot be served; the message says why (for a 400 naming ``rrule``)."""


@dataclass(frozen=True)
class Recurrence:
    """The occurrences of a series: their original starts, in UTC."""

    rule: rrule
    count: int | None
    excluded: frozenset[datetime]  # EXDATE instants (UTC)
    excluded_days: frozenset[date]  # EXDATE;VALUE=DATE days (local)
    zone: ZoneInfo
    start: datetime
    bounded: bool  # COUNT or UNTIL given

    def starts(self, after: datetime, before: datetime) -> list[datetime]:
        """Original starts in ``[after, before)``, EXDATEs left out."""
        found: list[datetime] = []
        for start in self._iter(after):
            if start >= before:
                break
            if start >= after and not self._excluded(start):
                found.append(start)
        return found

    def first(self) -> datetime | None:
        for start in self._iter(self.start):
            if not self._excluded(start):
                return start
        return None

    def next_start(self, after: datetime) -> datetime | None:
        """The first original start at or after ``after`` (None: the series has ended)."""
        for start in self._iter(after):
            if start >= after and not self._excluded(start):
                return start
        return None

    def is_occurrence(self, start: datetime) -> bool:
        return start in self.starts(start, start + timedelta(microseconds=1))

    def _iter(self, after: datetime) -> Iterator[datetime]:
        if self.count is not None:
            # COUNT counts from the series start (EXDATEs included, RFC 5545 §3.8.5.1).
            for i, local in enumerate(self.rule):
                if i >= self.count:
                    return
                yield local.astimezone(UTC)
            return
        for local in self.rule.xafter(after.astimezone(self.zone), inc=True):
            yield local.astimezone(UTC)

    def _excluded(self, start: datetime) -> bool:
        return start in self.excluded or start.astimezone(self.zone).date() in self.excluded_days


def _lines(text: str, zone: ZoneInfo) -> tuple[str, set[datetime], set[date]]:
    """The RRULE line's value and the EXDATE values of ``text``."""
    rule_line: str | None = None
    excluded: set[datetime] = set()
    excluded_days: set[date] = set()
    for raw in text.replace("\\n", "\n").splitlines():
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        key, _, params = name.partition(";")
        key = key.upper()
        if not sep and "=" in line:
            key, value = "RRULE", line  # a bare FREQ=… rule
        if key == "RRULE":
            if rule_line is not None:
                raise RecurrenceError("has more than one RRULE")
            rule_line = value
        elif key == "EXDATE":
            _exdates(params, value, zone, excluded, excluded_days)
        elif key == "DTSTART":
            continue  # the series starts at startTime
        else:
            raise RecurrenceError(f"has an unsupported line {key[:20]!r} (RRULE and EXDATE only)")
    if rule_line is None:
        raise RecurrenceError("needs an RRULE (e.g. RRULE:FREQ=WEEKLY;COUNT=10)")
    if len(excluded) + len(excluded_days) > MAX_EXDATES:
        raise RecurrenceError(f"has more than {MAX_EXDATES} EXDATE values")
    return rule_line, excluded, excluded_days


def parse(text: str, start: datetime, zone: ZoneInfo) -> Recurrence:
    """The series of ``text`` starting at ``start``; :class:`RecurrenceError` when it cannot
    be served or yields no occurrence at all."""
    rule_line, excluded, excluded_days = _lines(text, zone)

    parts: dict[str, str] = {}
    for item in rule_line.split(";"):
        if not item.strip():
            continue
        part, eq, value = item.partition("=")
        part = part.strip().upper()
        if not eq or part not in PARTS:
            raise RecurrenceError(f"has an unsupported part {part[:20]!r}")
        if part in parts:
            raise RecurrenceError(f"gives {part} twice")
        parts[part] = value.strip().upper()
    freq = parts.get("FREQ")
    if freq not in FREQUENCIES:
        raise RecurrenceError("FREQ must be one of " + ", ".join(FREQUENCIES))
    if "COUNT" in parts and "UNTIL" in parts:
        raise RecurrenceError("takes COUNT or UNTIL, not both")
    count = _whole(parts, "COUNT", 1, MAX_COUNT)
    _whole(parts, "INTERVAL", 1, MAX_INTERVAL)
    _check_list(parts, "BYDAY", _BYDAY)
    _check_list(parts, "BYMONTHDAY", _NUMBER, low=-31, high=31)
    _check_list(parts, "BYMONTH", _NUMBER, low=1, high=12)
    _check_feasible(parts, freq)

    cap = start + MAX_SPAN
    until = cap
    if "UNTIL" in parts:
        given = _instant(parts.pop("UNTIL"), zone, end_of_day=True)
        if given is None:
            raise RecurrenceError("UNTIL must be a date or a date-time (20270101T090000Z)")
        until = min(given, cap)
    parts.pop("COUNT", None)
    normalized = "RRULE:" + ";".join(f"{k}={v}" for k, v in parts.items())
    local_start = start.astimezone(zone)
    try:
        parsed = rrulestr(normalized, dtstart=local_start)
        assert isinstance(parsed, rrule)
        expanded = parsed.replace(until=until.astimezone(zone))
    except (ValueError, TypeError, AssertionError) as exc:
        raise RecurrenceError(f"is not a valid RRULE: {exc}") from None
    recurrence = Recurrence(
        rule=expanded,
        count=count,
        excluded=frozenset(excluded),
        excluded_days=frozenset(excluded_days),
        zone=zone,
        start=start,
        bounded=count is not None or until < cap,
    )
    if recurrence.first() is None:
        raise RecurrenceError("yields no occurrence")
    return recurrence


def _exdates(
    params: str, value: str, zone: ZoneInfo, instants: set[datetime], days: set[date]
) -> None:
    where, is_date = zone, False
    for param in params.split(";"):
        name, _, setting = param.partition("=")
        if name.upper() == "TZID" and setting:
            try:
                where = ZoneInfo(setting.strip('"'))
            except (ZoneInfoNotFoundError, ValueError):
                raise RecurrenceError(f"EXDATE has an unknown TZID {setting[:40]!r}") from None
        elif name.upper() == "VALUE" and setting.upper() == "DATE":
            is_date = True
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        match = _STAMP.match(item)
        if match is None:
            raise RecurrenceError(f"EXDATE value {item[:20]!r} is not a date or date-time")
        if is_date or match.group(2) is None:
            days.add(_date(match.group(1)))
            continue
        instant = _instant(item, where)
        assert instant is not None
        instants.add(instant)


def _instant(value: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime | None:
    match = _STAMP.match(value)
    if match is None:
        return None
    try:
        day = _date(match.group(1))
    except RecurrenceError:
        return None
    if match.group(2) is None:
        moment = time(23, 59, 59) if end_of_day else time(0, 0)
        return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)
    try:
        moment = time(int(value[9:11]), int(value[11:13]), int(value[13:15]))
    except ValueError:
        return None
    if match.group(3):
        return datetime.combine(day, moment, tzinfo=UTC)
    return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)


def _date(digits: str) -> date:
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise RecurrenceError(f"{digits} is not a date") from None


def _check_feasible(parts: dict[str, str], freq: str) -> None:
    """Refuse what can never match (dateutil would search for it up to the year 9999):
    a day of the month no chosen month has, an nth weekday no period has."""
    for item in parts.get("BYDAY", "").split(",") if "BYDAY" in parts else []:
        match = _BYDAY.match(item)
        assert match is not None
        if match.group(1) is None:
            continue
        nth = abs(int(match.group(1)))
        limit = {"MONTHLY": 5, "YEARLY": 53}.get(freq)
        if limit is None:
            raise RecurrenceError(f"BYDAY {item} (an nth weekday) needs FREQ=MONTHLY or YEARLY")
        if not 1 <= nth <= limit:
            raise RecurrenceError(f"BYDAY {item}: with FREQ={freq} n is from 1 to {limit}")
    if "BYMONTHDAY" in parts:
        months = [int(m) for m in parts["BYMONTH"].split(",")] if "BYMONTH" in parts else []
        longest = max(MONTH_DAYS[m - 1] for m in months) if months else 31
        if all(abs(int(d)) > longest for d in parts["BYMONTHDAY"].split(",")):
            raise RecurrenceError("yields no occurrence (no chosen month has that day)")


def _whole(parts: dict[str, str], name: str, low: int, high: int) -> int | None:
    if name not in parts:
        return None
    value = parts[name]
    if not value.isdigit() or not low <= int(value) <= high:
        raise RecurrenceError(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _check_list(
    parts: dict[str, str],
    name: str,
    pattern: re.Pattern[str],
    *,
    low: int | None = None,
    high: int | None = None,
) -> None:
    if name not in parts:
        return
    items = parts[name].split(",")
    for item in items:
        if not pattern.match(item):
            raise RecurrenceError(f"{name} has an invalid value {item[:20]!r}")
        if low is not None and high is not None:
            number = int(item)
            if number == 0 or not low <= number <= high:
                raise RecurrenceError(f"{name} values must be from {low} to {high}, not 0")
