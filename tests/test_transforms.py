import re
from datetime import date, datetime, timezone

import pytest

from adapter.transforms import (
    DateParams, DefaultParams, JoinParams, LeftPadParams, MapParams, TransformError,
    build_date, build_default, build_digits_only, build_join, build_left_pad, build_map, build_trim,
)


def test_trim_strips_and_turns_blank_into_none():
    trim = build_trim(None)
    assert trim("  Zoë ") == "Zoë"
    assert trim("   ") is None
    assert trim(None) is None
    assert trim(12) == 12


def test_digits_only_keeps_digits_and_leading_zeros():
    digits_only = build_digits_only(None)
    assert digits_only("6064 3660-1100.0001") == "6064366011000001"
    assert digits_only("000009921") == "000009921"
    assert digits_only(9921) == "9921"
    assert digits_only("n.v.t.") is None
    assert digits_only(None) is None


def test_digits_only_refuses_booleans():
    with pytest.raises(TransformError):
        build_digits_only(None)(True)


@pytest.mark.parametrize("written", ["6,06437E+15", "6.06437E+15", " 6,064366E+15 ", "9,99994e08"])
def test_digits_only_refuses_a_number_a_spreadsheet_wrote_in_scientific_notation(written):
    """An export saved from Excel writes a pass number of 16 digits as 6,06437E+15: its digits were taken for the
    number, 60643715, a short pass number that no card carries (and the same for every pass of the series)."""
    with pytest.raises(TransformError) as caught:
        build_digits_only(None)(written)
    assert "scientific notation" in str(caught.value) and "as text" in str(caught.value)
    assert "6064" not in str(caught.value)


def test_left_pad_restores_the_bsn_a_spreadsheet_shortened():
    left_pad = build_left_pad(LeftPadParams(width=9))
    assert left_pad("9921") == "000009921"
    assert left_pad("99993653") == "099993653"
    assert left_pad("999993653") == "999993653"
    assert left_pad(None) is None
    assert build_left_pad(LeftPadParams(width=4, char="x"))("1") == "xxx1"


@pytest.mark.parametrize("fmt, text, expected", [
    ("%d-%m-%Y", "02-11-2014", date(2014, 11, 2)),
    ("%d-%m-%Y", "2-1-2014", date(2014, 1, 2)),
    ("%d/%m/%Y", "31/12/1999", date(1999, 12, 31)),
    ("%Y-%m-%d", "2014-11-02", date(2014, 11, 2)),
    ("%Y%m%d", "20141102", date(2014, 11, 2)),
    ("iso", "2014-11-02", date(2014, 11, 2)),
    ("iso", "2014-11-02T10:00:00", date(2014, 11, 2)),
])
def test_date_formats(fmt, text, expected):
    assert build_date(DateParams(format=fmt))(text) == expected


@pytest.mark.parametrize("fmt, text, rule", [
    ("%d-%m-%Y", "31-02-2014", "not an existing calendar date"),
    ("%d-%m-%Y", "2014-11-02", "not a date in format"),
    ("%d-%m-%Y", "00-00-2010", "incomplete date"),
    ("%d-%m-%Y", "aa-bb-cccc", "not a date in format"),
    ("iso", "2010-00-00", "incomplete date"),
    ("iso", "gisteren", "not an ISO date"),
    ("%Y%m%d", "2014-11-02", "not a date in format"),
    ("%Y%m%d", "20170600", "incomplete date"),
    ("%Y%m%d", "20170231", "not an existing calendar date"),
])
def test_date_rejects_with_the_rule_not_the_value(fmt, text, rule):
    with pytest.raises(TransformError) as caught:
        build_date(DateParams(format=fmt))(text)
    assert rule in str(caught.value)
    assert text not in str(caught.value)


@pytest.mark.parametrize("instant, expected", [
    ("2021-08-31T21:59:59Z", date(2021, 8, 31)),  # summer time, UTC+2
    ("2021-12-31T22:59:59Z", date(2021, 12, 31)),  # winter time, UTC+1
    ("2021-08-31T22:00:00+00:00", date(2021, 9, 1)),
])
def test_utc_instant_means_local_end_of_day(instant, expected):
    assert build_date(DateParams(format="utc_instant_local_end_of_day"))(instant) == expected


def test_date_accepts_what_zeep_already_parsed():
    to_date = build_date(DateParams(format="%d-%m-%Y"))
    assert to_date(date(2014, 11, 2)) == date(2014, 11, 2)
    assert to_date(datetime(2014, 11, 2, 12)) == date(2014, 11, 2)
    end_of_day = build_date(DateParams(format="utc_instant_local_end_of_day"))
    assert end_of_day(datetime(2021, 8, 31, 21, 59, 59, tzinfo=timezone.utc)) == date(2021, 8, 31)
    assert to_date(None) is None


def test_date_params_refuse_a_non_format():
    with pytest.raises(ValueError):
        DateParams(format="dd-mm-yyyy")


def test_map_translates_text_and_booleans():
    status = build_map(MapParams(values={"K": True, "M": False}))
    assert status("K") is True
    assert status(" M ") is False
    blocked = build_map(MapParams(values={False: "blocked", True: "active"}))
    assert blocked(False) == "blocked"
    assert blocked("false") == "blocked"  # the same value from a CSV column
    assert blocked(True) == "active"


def test_map_without_default_rejects_an_unknown_value():
    category = build_map(MapParams(values={"K": True}))
    with pytest.raises(TransformError) as caught:
        category("Z")
    assert "known: K" in str(caught.value)


def test_map_with_default():
    assert build_map(MapParams(values={"K": True}, default=False))("Z") is False
    assert build_map(MapParams(values={"K": True}, default=None))("Z") is None


def test_join_skips_empty_parts():
    join = build_join(JoinParams())
    assert join(["van", None, " der ", "", "Berg"]) == "van der Berg"
    assert join([None, ""]) is None
    assert build_join(JoinParams(separator=", "))(["a", "b"]) == "a, b"
    assert join("single") == "single"


def test_default_fills_missing_values_only():
    default = build_default(DefaultParams(value="active"))
    assert default(None) == "active"
    assert default("") == "active"
    assert default("blocked") == "blocked"
    assert default(False) is False


from hypothesis import given, strategies as st  # noqa: E402


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
       st.sampled_from(["%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d", "%Y%m%d", "%m.%d.%Y"]))
def test_sliced_date_parsing_agrees_with_strptime(value, fmt):
    assert build_date(DateParams(format=fmt))(value.strftime(fmt)) == datetime.strptime(value.strftime(fmt), fmt).date()


@given(st.lists(st.one_of(st.sampled_from(["01-08-2026", " 31-07-2027 ", "29-02-2023", "00-00-2010", "1-8-2026"]),
                          st.text(alphabet="0123456789- ", max_size=12)), max_size=30))
def test_a_date_transform_answers_repeated_texts_as_the_first_time(texts):
    # The transform remembers parsed dates; a fresh transform per text is the reference.
    remembering = build_date(DateParams(format="%d-%m-%Y"))
    for text in texts + texts:
        try:
            expected = build_date(DateParams(format="%d-%m-%Y"))(text)
        except TransformError as exc:
            with pytest.raises(TransformError, match=re.escape(str(exc))):
                remembering(text)
        else:
            assert remembering(text) == expected


def test_digits_only_refuses_a_float_instead_of_keeping_its_fraction_as_a_digit():
    from adapter.transforms import TransformError, build_digits_only

    digits_only = build_digits_only(None)
    assert digits_only(6064366011000001) == "6064366011000001"
    with pytest.raises(TransformError, match="not digits"):
        digits_only(6064366011000001.0)


@pytest.mark.parametrize("fmt, text", [("%d-%m-%Y", "14-03-+201"), ("%d-%m-%Y", "1_4-03-2014"),
                                       ("%d-%m-%Y", "\u0661\u0664-03-2014"), ("%d-%m-%Y", "014-03-2014"),
                                       ("%Y%m%d", "\u0662\u0660\u0661\u0664\u0660\u0663\u0661\u0664"),
                                       ("iso", "2020-W01-1"), ("iso", "2020-01-01T25:00"), ("iso", "2020-01-01junk")])
def test_a_date_is_only_ascii_digits_in_its_format(fmt, text):
    """int() and fromisoformat's first ten characters took these for dates (a year 201, a week date, hour 25)."""
    from adapter.transforms import DateParams, TransformError, build_date

    with pytest.raises(TransformError):
        build_date(DateParams(format=fmt))(text)
    assert build_date(DateParams(format="iso"))("2026-08-01T23:59:59+02:00").isoformat() == "2026-08-01"
    assert build_date(DateParams(format="%d-%m-%Y"))("1-8-2026").isoformat() == "2026-08-01"
