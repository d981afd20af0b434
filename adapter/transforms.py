"""The closed list of value transforms a mapping file may name.

Mappings are data, and personal data flows through them, so there is no
expression language and no ``eval``: a transform is one of the names below with
typed parameters. Each builder turns parameters into a plain function that is
called once per value, so per-row cost is one Python call per step (the nightly
sync maps up to a million rows).

A transform that cannot handle a value raises ``TransformError`` whose message
names the rule, never the value: the value may be a BSN or a name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

Transform = Callable[[Any], Any]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


class TransformError(ValueError):
    """A value did not fit a transform's rule; the message names the rule only."""


class Unreadable:
    """A value the source sent that its own declared type could not read (an ``xsd:date`` holding "31-07-2027"),
    in the place of that value. Never mapped: the field that meets it rejects its record, naming the field, with
    ``reason`` (no value in it). Taken as empty instead, a pass's end date would have made it valid for ever."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __str__(self) -> str:  # a transform that turns values into text meets it there
        raise TransformError(self.reason)

    def __repr__(self) -> str:
        return f"Unreadable({self.reason!r})"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def text_of(value: Any) -> str:
    """One value the source sent, as text. A nested object, a list or bytes is refused: ``str()`` of it is its
    repr, so a path that stops one level too high (a JSON ``naam`` object, an XML element with children) put
    "{'roepnaam': ..., 'bsn': ...}" in a name that the counter shows a shop, or its digits in a pass number."""
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        raise TransformError(f"is {'a list' if isinstance(value, (list, tuple)) else 'a nested object'}, not one "
                             "value (point the path at a value inside it)")
    if isinstance(value, (bytes, bytearray)):
        raise TransformError("is bytes, not text (the connector must decode what it reads)")
    return str(value)


# -- trim -------------------------------------------------------------------


def build_trim(params: None) -> Transform:
    # CSV exports have no null: an empty or blank cell means "not given".
    def trim(value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    return trim


# -- digits_only --------------------------------------------------------------

_NOT_DIGITS = re.compile(r"\D+")
# 6,06437E+15: how Excel writes a long number it took for an amount, rounded to 6 digits.
_SCIENTIFIC = re.compile(r"\s*[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+\s*")


def build_digits_only(params: None) -> Transform:
    # Pass numbers arrive as "6011 0123 4567" on some exports, BSNs as "9999.93.653".
    def digits_only(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool):
            raise TransformError("is not a number (digits_only)")
        if isinstance(value, float):
            # 6064366011000001.0 (a JSON number, an xsd:double) would keep its ".0" as a last digit, and a float has
            # lost digits already past 2**53: neither is a pass number or BSN to trust.
            raise TransformError("is a number with a fraction or an exponent, not digits (digits_only); send it as "
                                 "text or as a whole number")
        text = value if isinstance(value, str) else text_of(value)
        if text.isdigit():
            return text
        if _SCIENTIFIC.fullmatch(text):
            # Its digits are not the number: 6,06437E+15 would become pass number 60643715.
            raise TransformError("is written in scientific notation, as a spreadsheet writes a long number it "
                                 "rounded (digits_only); export the column as text")
        return _NOT_DIGITS.sub("", text) or None

    return digits_only


# -- left_pad ------------------------------------------------------------------


class LeftPadParams(_Params):
    width: int = Field(ge=1, le=64)
    char: str = Field(default="0", min_length=1, max_length=1)


def build_left_pad(params: LeftPadParams) -> Transform:
    # Spreadsheets turn BSN 012345678 into 12345678; left_pad: 9 restores it.
    width, char = params.width, params.char

    def left_pad(value: Any) -> Any:
        if value is None:
            return None
        text = value if isinstance(value, str) else text_of(value)
        return text.rjust(width, char)

    return left_pad


# -- date ---------------------------------------------------------------------

ISO = "iso"
UTC_INSTANT_LOCAL_END_OF_DAY = "utc_instant_local_end_of_day"
_DAY_MONTH_YEAR = re.compile(r"^%([dmY])(.)%([dmY])\2%([dmY])$")


class DateParams(_Params):
    format: str

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in (ISO, UTC_INSTANT_LOCAL_END_OF_DAY):
            return value
        if "%" not in value:
            raise ValueError(
                f"'{value}' is not a date format; use 'iso', '{UTC_INSTANT_LOCAL_END_OF_DAY}' "
                "or a strftime format such as '%d-%m-%Y'"
            )
        try:
            datetime(2001, 2, 3).strftime(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a valid strftime format: {exc}") from None
        return value


def _split_date_parser(order: tuple[str, str, str], separator: str, fmt: str) -> Callable[[str], date]:
    """dd-mm-yyyy style dates by splitting: many times faster than strptime per row."""
    day_at, month_at, year_at = order.index("d"), order.index("m"), order.index("Y")

    def parse(text: str) -> date:
        parts = text.split(separator)
        # ASCII digits only, a day and a month of one or two, a year of four: int() alone would take "+201",
        # "1_4" or Arabic-Indic digits for numbers.
        if (len(parts) != 3 or len(parts[year_at]) != 4 or not all(part.isascii() and part.isdigit() for part in parts)
                or len(parts[day_at]) > 2 or len(parts[month_at]) > 2):
            raise TransformError(f"is not a date in format {fmt}")
        try:
            day, month, year = int(parts[day_at]), int(parts[month_at]), int(parts[year_at])
        except ValueError:
            raise TransformError(f"is not a date in format {fmt}") from None
        if day == 0 or month == 0:
            # StUF and Suwinet send incomplete dates as 00-00-2010.
            raise TransformError("is an incomplete date (day or month unknown)")
        try:
            return date(year, month, day)
        except ValueError:
            raise TransformError(f"is not an existing calendar date ({fmt})") from None

    return parse


def _compact_date(text: str) -> date:
    """yyyymmdd (StUF) by slicing; 00 for day or month means the date is incomplete."""
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        raise TransformError("is not a date in format %Y%m%d")
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    if month == 0 or day == 0:
        raise TransformError("is an incomplete date (day or month unknown)")
    try:
        return date(year, month, day)
    except ValueError:
        raise TransformError("is not an existing calendar date (%Y%m%d)") from None


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# What may follow the day: a time of day (an instant), nothing else. Not a week date (2020-W01-1) or an hour 25.
_ISO_TIME = re.compile(r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?")


def _iso_date(text: str) -> date:
    if not (_ISO_DAY.match(text) and _ISO_TIME.fullmatch(text, 10)):
        if text[5:7] == "00" or text[8:10] == "00":
            raise TransformError("is an incomplete date (day or month unknown)")
        raise TransformError("is not an ISO date (yyyy-mm-dd)")
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        if text[5:7] == "00" or text[8:10] == "00":
            raise TransformError("is an incomplete date (day or month unknown)") from None
        raise TransformError("is not an ISO date (yyyy-mm-dd)") from None


def _local_end_of_day(text: str) -> date:
    # PASS/GPASS sends expiry as the UTC instant of local end of day:
    # 2021-08-31T21:59:59Z is 31 August in Amsterdam; truncating gives the wrong day
    # in winter time and summer time alike.
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise TransformError("is not an ISO 8601 instant") from None
    return _instant_to_local_date(instant)


def _instant_to_local_date(instant: datetime) -> date:
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(AMSTERDAM).date()


# Texts a date transform remembers with their date: an export holds few distinct dates
# (one pass year; birth dates of some decades), so most rows skip the parse. 40,000
# covers a century of birth dates in about 5 MB; past that, new texts are parsed each time.
_REMEMBERED_DATES = 40_000


def build_date(params: DateParams) -> Transform:
    fmt = params.format
    parse_text: Callable[[str], date]
    split_format = _DAY_MONTH_YEAR.match(fmt)
    if fmt == ISO:
        parse_text = _iso_date
    elif fmt == UTC_INSTANT_LOCAL_END_OF_DAY:
        parse_text = _local_end_of_day
    elif fmt == "%Y%m%d":
        parse_text = _compact_date
    elif split_format and sorted(split_format.group(1, 3, 4)) == ["Y", "d", "m"]:
        parse_text = _split_date_parser(split_format.group(1, 3, 4), split_format.group(2), fmt)
    else:

        def parse_text(text: str) -> date:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                raise TransformError(f"is not a date in format {fmt}") from None

    to_local = fmt == UTC_INSTANT_LOCAL_END_OF_DAY
    # Only parsed dates are kept: a text that fails raises again, each time.
    remembered: dict[str, date] = {}

    def to_date(value: Any) -> Any:
        if isinstance(value, str):
            parsed = remembered.get(value)
            if parsed is None:
                parsed = parse_text(value.strip())
                if len(remembered) < _REMEMBERED_DATES and value.__class__ is str:  # a subclass may hold more
                    remembered[value] = parsed
            return parsed
        if value is None:
            return None
        # zeep already turns xsd:date and xsd:dateTime into Python objects.
        if isinstance(value, datetime):
            return _instant_to_local_date(value) if to_local else value.date()
        if isinstance(value, date):
            return value
        raise TransformError(f"is not a date in format {fmt}")

    return to_date


# -- map ----------------------------------------------------------------------

_NO_DEFAULT = object()


class MapParams(_Params):
    values: dict[Any, Any] = Field(min_length=1)
    # Without a default an unlisted source value rejects the record: a new
    # status code in the source system should be noticed, not guessed at.
    default: Any = None

    @field_validator("values", mode="before")
    @classmethod
    def _scalar_keys(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            for key in values:
                if not isinstance(key, (str, int, bool)) and key is not None:
                    raise ValueError("keys must be text, numbers, true/false or null")
        return values


def build_map(params: MapParams) -> Transform:
    table = dict(params.values)
    # YAML reads `K:` as text and `false:` as a boolean; CSV sends "false" as text.
    # Also index every key as text so both spellings of a value match.
    for key, mapped in list(table.items()):
        table.setdefault(_text_key(key), mapped)
    default = params.default if "default" in params.model_fields_set else _NO_DEFAULT
    known = ", ".join(sorted({_text_key(key) for key in params.values}))

    def map_value(value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        try:
            return table[value]
        except (KeyError, TypeError):
            pass
        try:
            return table[_text_key(value)]
        except KeyError:
            if default is not _NO_DEFAULT:
                return default
            raise TransformError(f"has a value not in the map (known: {known})") from None

    return map_value


def _text_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


# -- join ---------------------------------------------------------------------


class JoinParams(_Params):
    separator: str = " "


def build_join(params: JoinParams) -> Transform:
    separator = params.separator

    def join(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            return value
        parts = [text for part in value if part is not None and (text := text_of(part).strip())]
        return separator.join(parts) or None

    return join


# -- default ------------------------------------------------------------------


class DefaultParams(_Params):
    value: Any


def build_default(params: DefaultParams) -> Transform:
    fallback = params.value

    def default(value: Any) -> Any:
        if value is None or value == "":
            return fallback
        return value

    return default


# -- the closed list ---------------------------------------------------------------


class TransformSpec:
    """How a mapping file names a transform and how its parameters look."""

    def __init__(
        self,
        builder: Callable[[Any], Transform],
        params_model: type[_Params] | None,
        shorthand: str | None = None,
    ):
        self.builder = builder
        self.params_model = params_model
        # The parameter a scalar stands for: `left_pad: 9` means width 9.
        self.shorthand = shorthand


TRANSFORMS: dict[str, TransformSpec] = {
    "trim": TransformSpec(build_trim, None),
    "digits_only": TransformSpec(build_digits_only, None),
    "left_pad": TransformSpec(build_left_pad, LeftPadParams, shorthand="width"),
    "date": TransformSpec(build_date, DateParams, shorthand="format"),
    "map": TransformSpec(build_map, MapParams),
    "join": TransformSpec(build_join, JoinParams, shorthand="separator"),
    "default": TransformSpec(build_default, DefaultParams, shorthand="value"),
}
