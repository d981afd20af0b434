"""Any record that passes validation can be stored by a sync, on both databases: whatever text a source sends, one
record never fails the whole run. Fails without the checks of NUL, half UTF-16 pairs and id length (validation)."""

from __future__ import annotations

import itertools
from datetime import date

from hypothesis import HealthCheck, given, settings, strategies as st

from adapter.records import CardholderRecord, RejectedRecord
from adapter.settings import SyncSettings
from adapter.sync import run_sync
from adapter.validation import validate_record

TODAY = date(2026, 11, 30)
_passes = itertools.count()  # a pass number of its own for each example (each is also a source of its own)
# Any character, and more often than by chance what a source sends and no database keeps: a NUL, half of a
# UTF-16 pair (Hypothesis leaves those out unless asked), and ids about as long as the column.
hard = st.sampled_from(["\x00", "\ud83d", "\ude42", "\udcff"])
any_text = st.lists(st.one_of(st.characters(), hard), max_size=12).map("".join)
maybe_text = st.one_of(st.none(), any_text)
ids = st.one_of(any_text.filter(bool), st.from_regex(r"[A-Z]?\d{1,10}", fullmatch=True),
                st.integers(min_value=120, max_value=136).map(lambda length: "7" * length))
record = st.builds(lambda household, holder, first, initials, prefix, surname: CardholderRecord(
    "line 1", household, holder, f"60643660{next(_passes):08d}", None, first, initials, prefix, surname,
    date(2015, 1, 1), date(2026, 8, 1), date(2027, 7, 31)), ids, ids, maybe_text, maybe_text, maybe_text, maybe_text)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(record=record)
def test_a_record_that_passes_validation_is_stored(db, vault, record):
    checked = validate_record(record, TODAY)
    result = run_sync(db, vault, f"fuzz-{record.pass_number}", [checked],
                      settings=SyncSettings(max_change_share=1.0, min_row_share=0.0), today=TODAY)
    assert result.ok, result.reason
    assert (result.created, result.rejected) == ((0, 1) if isinstance(checked, RejectedRecord) else (1, 0))
