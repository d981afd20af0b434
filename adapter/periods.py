"""Reporting periods in the municipality's own time zone.

A month is a local month (Europe/Amsterdam): a redemption at 00:30 on 1 April
local time belongs to April, although it is still 31 March in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

LOCAL_ZONE = ZoneInfo("Europe/Amsterdam")
_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Years a period may span. Four digits alone allow 0001 and 9999, whose local midnights fall outside what a
# datetime holds (a 500 on the dashboard, a traceback from the CLI) and which no budget can lie in anyway.
FIRST_YEAR, LAST_YEAR = 1900, 2999


class PeriodError(ValueError):
    """A period the user typed that we cannot read; the message says what is accepted."""


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date  # inclusive
    label: str

    @property
    def start_utc(self) -> datetime:
        return local_midnight_utc(self.first_day)

    @property
    def end_utc(self) -> datetime:
        """Exclusive: the first instant after the period."""
        return local_midnight_utc(self.last_day + timedelta(days=1))

    def months(self) -> list[str]:
        found: list[str] = []
        year, month = self.first_day.year, self.first_day.month
        while (year, month) <= (self.last_day.year, self.last_day.month):
            found.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return found


def parse_period(text: str) -> Period:
    """``YYYY``, ``YYYY-MM`` or ``FROM..TO`` (each side a month or a day)."""
    text = text.strip()
    try:
        if ".." in text:
            start_text, end_text = (part.strip() for part in text.split("..", 1))
            first_day = _bound(start_text, start=True)
            last_day = _bound(end_text, start=False)
            if last_day < first_day:
                raise PeriodError(f"period {text!r} ends before it starts")
            return _within_years(Period(first_day, last_day, f"{start_text}..{end_text}"))
        if _YEAR.match(text) or _MONTH.match(text):
            return _within_years(Period(_bound(text, start=True), _bound(text, start=False), text))
    except ValueError as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError(f"period {text!r} is not a real date ({exc})") from None
    raise PeriodError(f"period {text!r} not understood: use YYYY, YYYY-MM or FROM..TO "
                      "(e.g. 2026, 2026-03, 2026-01..2026-06 or 2026-01-15..2026-02-14)")


def parse_month(text: str) -> Period:
    if not _MONTH.match(text.strip()):
        raise PeriodError(f"month {text!r} not understood: use YYYY-MM, e.g. 2026-03")
    return parse_period(text)


def last_spendable_day(period_end: date, grace_days: int) -> date:
    """The last day a budget of a period ending on ``period_end`` may be spent: its end plus the rules' grace
    days (a late receipt for the school year). The counter stops offering it after this day, a reversal no
    longer puts money back on it, and the roll-over closes it the night after; all three ask this."""
    return period_end + timedelta(days=grace_days)


def earliest_spendable_end(today: date, grace_days: int) -> date:
    """The earliest period end whose budget may still be spent on ``today`` (see ``last_spendable_day``)."""
    return today - timedelta(days=grace_days)


def local_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LOCAL_ZONE).astimezone(timezone.utc)


def local_month(instant: datetime) -> str:
    return instant.astimezone(LOCAL_ZONE).strftime("%Y-%m")


def local_day(instant: datetime) -> date:
    return instant.astimezone(LOCAL_ZONE).date()


def _within_years(period: Period) -> Period:
    if period.first_day.year < FIRST_YEAR or period.last_day.year > LAST_YEAR:
        raise PeriodError(f"period {period.label!r} lies outside the years {FIRST_YEAR} to {LAST_YEAR}: use a period "
                          f"within them, e.g. {local_day(datetime.now(timezone.utc)).year}")
    return period


def _bound(text: str, *, start: bool) -> date:
    if _DAY.match(text):
        return date.fromisoformat(text)
    if _YEAR.match(text):
        return date(int(text), 1, 1) if start else date(int(text), 12, 31)
    match = _MONTH.match(text)
    if match:
        year, month = int(match.group(1)), int(match.group(2))
        if start:
            return date(year, month, 1)
        following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
        return following - timedelta(days=1)
    raise PeriodError(f"{text!r} is neither YYYY, YYYY-MM nor YYYY-MM-DD")
