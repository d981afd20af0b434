"""Budget rules as data: who gets how much, for which period, judged on which reference date.

The rules live in ``config/budgets.yaml`` (``settings.budgets``). This module
only reads and reasons about them; ``adapter.grants`` turns them into budgets.

- A rule's *period* is a calendar year, a school year (1 Aug - 31 Jul), a pass
  year starting on a configured day, or explicit dates.
- Age and pass validity are judged on the period's *reference date* (peildatum):
  a child turning 12 the day after it is still 11 for the whole period.
- A ``once`` rule (e.g. first year of secondary school) is granted at most once
  per child, whatever the period.
- ``pro_rata`` gives a child whose pass starts after the reference date the
  share of the period that is left.
- Changing a rule's amount in a running period never takes money back; a higher
  amount tops up (see ``adapter.grants``).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from adapter.records import PassStatus
from adapter.yaml_files import YamlFileProblem, read_yaml

ONCE_PERIOD_KEY = "once"
# How ``Rule.entitlement_cents`` judges: part of ``BudgetRules.fingerprint``, so that a version that judges the
# same facts otherwise judges every child again once, not only those whose records change. Raise it with such a
# change. 2: a replaced card counts beside a qualifying one (children judged before kept nothing of a rule added
# or raised mid-year). 3: an expired card counts beside a qualifying one too (a card renewed under a new number).
JUDGED_BY = 3
_MONTH_DAY_PATTERN = r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
# Cards that were the child's own on their days and are no longer in use: a lost card replaced by a new number,
# and last pass year's card where a source renews a pass under a new number (listed as expired, the new one valid
# from the pass year's first day). Each counts beside a card the rule takes (``Rule.entitlement_cents``).
FORMER_CARDS = (PassStatus.REPLACED, PassStatus.EXPIRED)


class RulesError(Exception):
    """The budget rules file is invalid; ``problems`` lists every problem with its key path."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{self.path}: {len(problems)} problem(s) in the budget rules:\n{listing}\n"
                         "Fix these keys and run the command again; no budget was granted.")


class PeriodKind(str, enum.Enum):
    CALENDAR_YEAR = "calendar_year"
    SCHOOL_YEAR = "school_year"  # 1 August - 31 July
    PASS_YEAR = "pass_year"  # from ``pass_year_starts`` (e.g. Amsterdam: 08-01)
    EXPLICIT = "explicit"  # ``starts`` .. ``ends``


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date
    key: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class PassFacts:
    """What eligibility needs to know about one of a child's passes (no personal data)."""

    status: str
    valid_from: date | None
    valid_until: date | None

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def month_day_of_every_year(text: str) -> str:
    """``text`` ("MM-DD", already of that shape) when that day exists in every year; else why not. "02-30" or
    "04-31" exist in none, "02-29" in one year of four: each would stop every sync, on the day a period is
    computed, with a date error that says nothing of the rules file."""
    month, day = (int(part) for part in text.split("-"))
    try:
        date(2001, month, day)  # not a leap year
    except ValueError:
        raise ValueError(f"{text} is not a day of every year; choose a month and day that exist in every year "
                         "(not 02-29)") from None
    return text


class Rule(_Strict):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=200)
    # Strict: 12.50 in a YAML file must be an error, not 12 cents.
    amount_cents: StrictInt = Field(ge=1, le=10_000_000)
    category: str | None = Field(default=None, pattern=r"^[a-z0-9_-]+$", max_length=64)
    min_age: StrictInt = Field(default=0, ge=0, le=30)
    max_age: StrictInt = Field(default=17, ge=0, le=30)
    period: PeriodKind
    starts: date | None = None  # explicit periods only
    ends: date | None = None
    # Month-day of the reference date inside the period; default: the period's first day.
    reference: str | None = Field(default=None, pattern=_MONTH_DAY_PATTERN)
    pass_statuses: tuple[str, ...] = ("active",)
    pro_rata: bool = False
    once: bool = False
    # Raise when the rule changes; budgets remember the version they were granted under.
    version: StrictInt = Field(default=1, ge=1)

    @field_validator("reference")
    @classmethod
    def _reference_is_a_day_of_every_year(cls, text: str | None) -> str | None:
        return None if text is None else month_day_of_every_year(text)

    @field_validator("pass_statuses")
    @classmethod
    def _known_statuses(cls, statuses: tuple[str, ...]) -> tuple[str, ...]:
        known = {"active", "blocked", "expired", "replaced"}
        unknown = sorted(set(statuses) - known)
        if unknown:
            raise ValueError(f"unknown pass status(es) {unknown}; choose from {sorted(known)}")
        if not statuses:
            raise ValueError("name at least one pass status that qualifies (usually 'active')")
        return statuses

    @field_validator("reference")
    @classmethod
    def _no_leap_day(cls, reference: str | None) -> str | None:
        if reference == "02-29":
            raise ValueError("29 February does not exist every year; choose 02-28 or 03-01")
        return reference

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        problems = []
        if self.min_age > self.max_age:
            problems.append(f"min_age {self.min_age} is above max_age {self.max_age}")
        if self.period == PeriodKind.EXPLICIT:
            if self.starts is None or self.ends is None:
                problems.append("an explicit period needs both 'starts' and 'ends' (YYYY-MM-DD)")
            elif self.ends < self.starts:
                problems.append("'ends' lies before 'starts'")
            elif self.reference is not None and not self._reference_within(self.starts, self.ends):
                # Else the children were judged on 'ends' instead, a day the officer never named.
                problems.append(f"reference {self.reference} does not fall between 'starts' {self.starts} and "
                                f"'ends' {self.ends}; choose a month and day inside the period, or leave "
                                "'reference' out to judge on its first day")
        elif self.starts is not None or self.ends is not None:
            problems.append(f"'starts'/'ends' only belong to period 'explicit', not '{self.period.value}'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def period_on(self, day: date, pass_year_starts: str) -> Period | None:
        """The period of this rule that contains ``day`` (None when an explicit period does not)."""
        if self.period == PeriodKind.CALENDAR_YEAR:
            return Period(date(day.year, 1, 1), date(day.year, 12, 31), str(day.year))
        if self.period == PeriodKind.SCHOOL_YEAR:
            start = _year_start_on_or_before(day, 8, 1)
            return Period(start, _one_year_on(start), f"{start.year}-{start.year + 1}")
        if self.period == PeriodKind.PASS_YEAR:
            month, month_day = (int(part) for part in pass_year_starts.split("-"))
            start = _year_start_on_or_before(day, month, month_day)
            return Period(start, _one_year_on(start), f"pass-{start.isoformat()}")
        assert self.starts is not None and self.ends is not None  # checked by _consistent
        if not self.starts <= day <= self.ends:
            return None
        return Period(self.starts, self.ends, f"{self.starts.isoformat()}..{self.ends.isoformat()}")

    def budget_key(self, period: Period) -> str:
        """The Budget.period_key: a once-rule has one key for ever, so it is granted once per child."""
        return ONCE_PERIOD_KEY if self.once else period.key

    def reference_date(self, period: Period) -> date:
        if self.reference is None:
            return period.start
        return min(self._first_reference_on_or_after(period.start), period.end)

    def _first_reference_on_or_after(self, start: date) -> date:
        assert self.reference is not None
        month, month_day = (int(part) for part in self.reference.split("-"))
        candidate = date(start.year, month, month_day)
        return candidate if candidate >= start else date(start.year + 1, month, month_day)

    def _reference_within(self, starts: date, ends: date) -> bool:
        return self._first_reference_on_or_after(starts) <= ends

    def entitlement_cents(self, period: Period, birth_date: date | None, is_child: bool | None,
                          passes: Iterable[PassFacts]) -> int:
        """What a child is entitled to under this rule for ``period``: 0 when not eligible."""
        if birth_date is None or is_child is False:
            return 0
        reference_day = self.reference_date(period)
        # The birth date counts only through this age: the grants judge children of the same ages on the
        # reference days once for all of them (age_days). A rule that looks at the date itself must change that.
        if not self.min_age <= age_on(birth_date, reference_day) <= self.max_age:
            return 0
        passes = list(passes)
        qualifying = [card for card in passes if card.status in self.pass_statuses]
        if qualifying:
            # The budget follows the child, not the card: a lost card replaced by a new number, or last pass
            # year's card renewed under a new one, was the child's pass on the days it was valid. Its successor
            # starts on the day it was issued (after the reference date of a calendar year's rule, for a card
            # renewed on 1 August), so without the old card a top-up or a rule added later gave such a child
            # nothing, or a share, where a child whose card was extended in place had it all.
            qualifying += [card for card in passes
                           if card.status in FORMER_CARDS and card.status not in self.pass_statuses]
        if any(card.valid_on(reference_day) for card in qualifying):
            return self.amount_cents
        if not self.pro_rata:
            return 0
        # Joined after the reference date: the share of the period from the pass's first day.
        join_days = [card.valid_from for card in qualifying
                     if card.valid_from is not None and reference_day < card.valid_from <= period.end
                     and card.valid_on(card.valid_from)]
        if not join_days:
            return 0
        days_left = (period.end - min(join_days)).days + 1
        return self.amount_cents * days_left // period.days


class BudgetRules(_Strict):
    pass_year_starts: str = Field(default="08-01", pattern=_MONTH_DAY_PATTERN)
    # Days after a period's end before what is left expires (shops may still book late receipts).
    expiry_grace_days: StrictInt = Field(default=0, ge=0, le=366)
    rules: tuple[Rule, ...] = ()

    @field_validator("pass_year_starts")
    @classmethod
    def _starts_on_a_day_of_every_year(cls, text: str) -> str:
        return month_day_of_every_year(text)

    def current(self, today: date) -> list[tuple[Rule, Period]]:
        """Every rule with the period running today."""
        running = []
        for rule in self.rules:
            period = rule.period_on(today, self.pass_year_starts)
            if period is not None:
                running.append((rule, period))
        return running

    def fingerprint(self, today: date) -> str:
        """Changes when the rules or today's periods change: then every child is judged again."""
        canonical = json.dumps([self.model_dump(mode="json"),
                                [(rule.code, period.key) for rule, period in self.current(today)]]
                               + ([JUDGED_BY] if JUDGED_BY > 1 else []),  # 1: keys as stored before it existed
                               sort_keys=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def age_days(running: Sequence[tuple[Rule, Period]]) -> tuple[date, ...]:
    """The days on which the running rules take a child's age. A child's birth date counts in
    ``Rule.entitlement_cents`` only through its age on the rule's reference date, so children of the same
    ages on these days (and the same other facts) are entitled to the same amounts."""
    return tuple(sorted({rule.reference_date(period) for rule, period in running}))


def age_on(birth_date: date, day: date) -> int:
    """Completed years on ``day`` (a child born 29 Feb turns a year older on 1 Mar in other years)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def load_rules(path: str | Path | None) -> BudgetRules:
    """Read and check a rules file; raise RulesError listing every problem. No file: no rules."""
    if path is None:
        return BudgetRules()
    rules_path = Path(path)
    try:
        raw = read_yaml(rules_path, "check `budgets:` in the configuration") or {}
    except YamlFileProblem as problem:
        raise RulesError(rules_path, [str(problem)]) from None
    return rules_from_mapping(raw, rules_path)


def rules_from_mapping(raw: Any, source: str | Path = "(budget rules)") -> BudgetRules:
    if not isinstance(raw, dict):
        raise RulesError(source, ["the top level must be a mapping with a 'rules' list"])
    problems = _duplicate_codes(raw.get("rules"))
    try:
        rules = BudgetRules.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
        raise RulesError(source, problems) from None
    if problems:
        raise RulesError(source, problems)
    return rules


def _duplicate_codes(raw_rules: Any) -> list[str]:
    if not isinstance(raw_rules, Sequence) or isinstance(raw_rules, str):
        return []
    seen: dict[str, int] = {}
    problems = []
    for index, raw_rule in enumerate(raw_rules):
        code = raw_rule.get("code") if isinstance(raw_rule, dict) else None
        if isinstance(code, str):
            if code in seen:
                problems.append(f"rules.{index}.code: '{code}' is already used by rules.{seen[code]}; "
                                "codes must be unique (budgets are kept per code)")
            else:
                seen[code] = index
    return problems


# What to write instead, by the key and pydantic's error type: its own words name a regular expression or a
# Python type, which tell a policy officer nothing.
_WHAT_TO_WRITE = {
    ("pass_year_starts", "string_pattern_mismatch"): 'write a month and day as "MM-DD" in quotes, e.g. "08-01"',
    ("reference", "string_pattern_mismatch"): 'write a month and day as "MM-DD" in quotes, e.g. "07-01"',
    ("code", "string_pattern_mismatch"): "use lower-case letters, digits, '-' and '_' only, e.g. school-primary",
    ("category", "string_pattern_mismatch"): "use lower-case letters, digits, '-' and '_' only, e.g. school",
    ("amount_cents", "int_type"): "write whole euro cents without a decimal point, e.g. 12500 for € 125,00",
    ("pass_statuses", "tuple_type"): "give a list of statuses, e.g. [active] or [active, blocked]",
}


def _describe(error: Any) -> str:
    key_path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    key = error["loc"][-1] if error["loc"] else None
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against config/budgets.yaml)"
    elif error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    elif (key, error["type"]) in _WHAT_TO_WRITE:
        # The rules file holds no personal data: the value the officer wrote may be quoted back.
        message = f"{_WHAT_TO_WRITE[key, error['type']]} (found {error['input']!r})"
    elif error["type"] == "int_type":
        message = f"write a whole number without quotes (found {error['input']!r})"
    return f"{key_path}: {message}"


def _year_start_on_or_before(day: date, month: int, month_day: int) -> date:
    start = date(day.year, month, month_day)
    return start if start <= day else date(day.year - 1, month, month_day)


def _one_year_on(start: date) -> date:
    return date(start.year + 1, start.month, start.day) - timedelta(days=1)
