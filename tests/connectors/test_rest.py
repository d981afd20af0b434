import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import responses
from responses import matchers

from adapter.connector import ConnectorError, SourceAuthError, SourceUnavailable
from adapter.mapping import load_mapping
from adapter.records import CardholderRecord, RejectedRecord
from adapter.settings import SyncSettings
from adapter.sources import map_records
from adapter.sync import run_sync
from connectors.rest import RestConnector

BASE_URL = "https://pas.example.test/rest/sales/v1"
LIST_URL = BASE_URL + "/pashouders"
SAMPLES = Path(__file__).parents[2] / "connectors" / "samples" / "rest"
MAPPING = load_mapping(Path(__file__).parents[2] / "mappings" / "demo-rest.yaml")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_PASS_API_KEY", "secret-key-1")


def connector(**options):
    return RestConnector({"base_url": BASE_URL, "api_key_env": "TEST_PASS_API_KEY", "page_size": 2,
                          "backoff_seconds": 0, **options}, source_name="pass")


def sample_page(offset):
    return json.loads((SAMPLES / f"pashouders-offset-{offset}.json").read_text(encoding="utf-8"))


@responses.activate
def test_pages_by_offset_until_total_with_the_bearer_key():
    for offset in (0, 2):
        responses.get(LIST_URL, json=sample_page(offset), match=[
            matchers.query_param_matcher({"offset": str(offset), "limit": "2"}),
            matchers.header_matcher({"Authorization": "Bearer secret-key-1"}),
        ])
    records = list(connector())
    assert [record.key for record in records] == ["page 1 item 0", "page 1 item 1", "page 2 item 0"]
    assert [record.fields["id"] for record in records] == [101, 201, 301]
    assert len(responses.calls) == 2


@responses.activate
def test_member_passes_map_with_local_end_of_day_expiry():
    for offset in (0, 2):
        responses.get(LIST_URL, json=sample_page(offset),
                      match=[matchers.query_param_matcher({"offset": str(offset), "limit": "2"})])
    mapped = list(map_records(connector(), MAPPING))
    assert all(isinstance(record, CardholderRecord) for record in mapped)
    noel = next(record for record in mapped if record.first_names == "Noël")
    # 2026-12-31T22:59:59Z is the last second of 31 December in Amsterdam (UTC+1).
    assert str(noel.valid_until) == "2026-12-31"
    assert (noel.household_id, noel.cardholder_id, noel.is_child) == ("101", "103", True)
    assert [record.pass_status.value for record in mapped if record.first_names == "Zoë"] == ["blocked", "active"]


@responses.activate
def test_401_is_a_clear_credentials_error_naming_the_variable_not_the_key():
    responses.get(LIST_URL, status=401, json={"detail": "invalid key"})
    with pytest.raises(SourceAuthError) as caught:
        list(connector())
    message = str(caught.value)
    assert "source 'pass'" in message and "TEST_PASS_API_KEY" in message and "HTTP 401" in message
    assert "secret-key-1" not in message
    assert len(responses.calls) == 1  # a refused key is not retried


@responses.activate
def test_500_then_success_is_retried():
    responses.get(LIST_URL, status=500, body="oops")
    responses.get(LIST_URL, json={"total": 1, "pashouders": [{"id": 1}]})
    records = list(connector(retries=2, backoff_seconds=0))
    assert [record.fields for record in records] == [{"id": 1}]
    assert len(responses.calls) == 2


@responses.activate
def test_persistent_5xx_gives_up_after_the_retries():
    responses.get(LIST_URL, status=503)
    with pytest.raises(SourceUnavailable) as caught:
        list(connector(retries=2))
    assert len(responses.calls) == 3
    assert "HTTP 503" in str(caught.value) and "after 3 attempts" in str(caught.value)


@responses.activate
def test_an_empty_page_before_total_is_an_error_not_a_short_list():
    responses.get(LIST_URL, json={"total": 5, "pashouders": [{"id": 1}]})
    responses.get(LIST_URL, json={"total": 5, "pashouders": []})
    with pytest.raises(ConnectorError, match="empty page after 1 of 5"):
        list(connector())


@responses.activate
def test_html_instead_of_json_is_named():
    responses.get(LIST_URL, body="<html>login</html>", content_type="text/html")
    with pytest.raises(ConnectorError, match="not JSON.*text/html"):
        list(connector())


def test_missing_key_variable_is_reported_before_any_request(monkeypatch):
    monkeypatch.delenv("TEST_PASS_API_KEY")
    result = connector().check()
    assert not result.ok
    assert result.steps[0].name == "settings" and "TEST_PASS_API_KEY" in result.steps[0].message
    with pytest.raises(ConnectorError, match="TEST_PASS_API_KEY"):
        list(connector())


@responses.activate
def test_check_separates_connection_from_credentials():
    responses.get(LIST_URL, status=403)
    # An injected session skips the TCP probe, which would leave the test host.
    result = RestConnector({"base_url": BASE_URL, "api_key_env": "TEST_PASS_API_KEY"},
                           session=requests.Session()).check()
    assert [(step.name, step.ok) for step in result.steps] == [
        ("settings", True), ("connection", True), ("credentials", False)]
    assert "HTTP 403" in result.render()


_FIX = "correct it in the source system"


@pytest.mark.parametrize(("field", "value", "reasons"), [
    ("voornaam", "Anouk\ud83d", [f"first_names: holds half of a UTF-16 character pair, which is not text; {_FIX}"]),
    # The main holder's id is the household's too (mappings/demo-rest.yaml).
    ("id", "30\u00001", [f"household_id: holds a NUL character, which is not text; {_FIX}",
                         f"cardholder_id: holds a NUL character, which is not text; {_FIX}"]),
    ("id", "3" * 129, [f"household_id: is longer than 128 characters; {_FIX}, or map a shorter id",
                       f"cardholder_id: is longer than 128 characters; {_FIX}, or map a shorter id"]),
], ids=["half a UTF-16 pair in a name", "NUL in an id", "an id too long"])
@responses.activate
def test_text_that_cannot_be_kept_refuses_its_record_and_the_rest_is_synced(db, vault, field, value, reasons):
    """JSON can carry half of a UTF-16 pair ("\\ud83d" alone), which no hash, encryption or database takes, a NUL
    ("\\u0000"), which PostgreSQL keeps in no text column, and an id longer than its column: each failed the whole
    run. Now that one record is refused, naming the field, and every other one is written."""
    pages = {0: sample_page(0), 2: sample_page(2)}
    pages[2]["pashouders"][0][field] = value  # json= writes it as the escape, as such a source would
    for offset, page in pages.items():
        responses.get(LIST_URL, json=page, match=[matchers.query_param_matcher({"offset": str(offset), "limit": "2"})])
    mapped = list(map_records(connector(), MAPPING))
    refused = [record for record in mapped if isinstance(record, RejectedRecord)]
    assert [record.reasons for record in refused] == [tuple(reasons)]
    result = run_sync(db, vault, "pass", mapped, settings=SyncSettings(max_change_share=1.0, min_row_share=0.0))
    assert result.ok, result.reason
    assert (result.created, result.rejected) == (len(mapped) - 1, 1)


@responses.activate
def test_json_nested_too_deeply_is_an_operator_error_not_a_recursion_error():
    responses.get(LIST_URL, body="[" * 100_000, content_type="application/json")
    with pytest.raises(ConnectorError, match="JSON nested too deeply"):
        list(connector().records())


@responses.activate
def test_an_api_whose_total_keeps_growing_is_paged_up_to_max_pages_then_refused():
    def growing(request):  # type: ignore[no-untyped-def]
        offset = int(request.params.get("offset", 0))
        items = [{"id": f"H{offset + n}"} for n in range(2)]
        return 200, {}, json.dumps({"pashouders": items, "total": offset + 10})

    responses.add_callback(responses.GET, LIST_URL, callback=growing, content_type="application/json")
    with pytest.raises(ConnectorError, match="still had records after 5 pages"):
        list(connector(max_pages=5).records())
    assert len(responses.calls) == 5


@pytest.mark.parametrize("kind, said", [("drip", "took longer than 0.5 s to send its whole answer"),
                                        ("drip-length", "took longer than 0.5 s to send its whole answer"),
                                        ("endless", "the answer went on past 1 MB")])
def test_an_answer_that_drips_or_never_ends_is_given_up_within_its_bounds(monkeypatch, kind, said):
    """A read timeout bounds only the wait between two packets: a byte every 0.1 s held a sync for as long as the
    server liked, and an endless body filled the memory."""
    import time

    from connectors import http
    from tests.connectors.dripping_server import serving

    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 1024 * 1024)
    with serving(kind) as base_url:
        started = time.monotonic()
        with pytest.raises(ConnectorError, match=said):
            list(RestConnector({"base_url": base_url + "/rest", "api_key_env": "TEST_PASS_API_KEY", "retries": 0,
                                "read_timeout": 0.5, "backoff_seconds": 0}, source_name="pass").records())
        assert time.monotonic() - started < 5


def _served_connector(served, **options):
    return RestConnector({"base_url": served.base_url + "/rest", "api_key_env": "TEST_PASS_API_KEY", "page_size": 2,
                          "backoff_seconds": 0, **options}, source_name="pass")


def _json_answer(document, content_type="application/json"):
    return 200, {"Content-Type": content_type}, json.dumps(document, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_api_is_asked_again_after_the_wait_its_retry_after_names(status):
    """A vendor API that rate-limits answers 429 (or 503) with Retry-After: 429 failed the night at once as
    'refused the request, check the paging options', and a 503's Retry-After was ignored, the retries spent
    within the backoff (here none) while the server had said when to come back."""
    from tests.connectors.scripted_server import serving

    def busy_once(query, number):  # type: ignore[no-untyped-def]
        if number == 0:
            return status, {"Retry-After": "1", "Content-Type": "application/json"}, b'{"detail": "slow down"}'
        return _json_answer({"total": 1, "pashouders": [{"id": 1}]})

    with serving(busy_once) as served:
        records = list(_served_connector(served, retries=2).records())
    assert [record.fields for record in records] == [{"id": 1}]
    (first, _), (second, _) = served.requests
    assert second - first >= 0.95


def test_an_api_that_keeps_rate_limiting_says_so_and_what_to_do():
    from tests.connectors.scripted_server import serving

    with serving(lambda query, number: (429, {"Retry-After": "0"}, b"")) as served:
        with pytest.raises(SourceUnavailable) as caught:
            list(_served_connector(served, retries=1).records())
    assert len(served.requests) == 2
    said = str(caught.value)
    assert "HTTP 429 (too many requests)" in said and "after 2 attempts" in said
    assert "rate limit" in said and "paging" not in said


def test_retry_after_is_read_as_seconds_or_as_a_date_and_bounds_the_pause():
    from email.utils import format_datetime

    from connectors.http import MAX_RETRY_AFTER_SECONDS, RetryableError, retry_after_seconds, with_retries

    in_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60
    assert (retry_after_seconds("120"), retry_after_seconds(None), retry_after_seconds("soon")) == (120, None, None)
    pauses: list[float] = []

    def refused():  # type: ignore[no-untyped-def]
        raise RetryableError("answered HTTP 503", retry_after=86_400)

    with pytest.raises(RetryableError):
        with_retries(refused, retries=2, backoff_seconds=1, sleep=pauses.append)
    assert pauses == [MAX_RETRY_AFTER_SECONDS, MAX_RETRY_AFTER_SECONDS]  # a night waits minutes, not a day


_ZOE = {"total": 1, "pashouders": [{"id": 1, "voornaam": "Zoë"}]}


@pytest.mark.parametrize("content_type, body", [
    ("text/plain", json.dumps(_ZOE, ensure_ascii=False).encode("utf-8")),
    ("application/json", b"\xef\xbb\xbf" + json.dumps(_ZOE, ensure_ascii=False).encode("utf-8")),
    ("application/json; charset=windows-1252", json.dumps(_ZOE, ensure_ascii=False).encode("cp1252")),
    ("application/json; charset=utf8mb4", json.dumps(_ZOE, ensure_ascii=False).encode("utf-8")),
    ("application/json; charset=ISO-8859-1", json.dumps(_ZOE, ensure_ascii=False).encode("utf-8")),
], ids=["UTF-8 served as text/plain", "UTF-8 with a byte order mark", "a charset named", "MySQL's name for UTF-8",
        "UTF-8 under a server's default label"])
def test_names_arrive_as_the_source_wrote_them_whatever_the_content_type(content_type, body):
    """JSON is UTF-8 (RFC 8259). Served as text/plain without a charset, requests read it as ISO-8859-1 and every
    'Zoë' was stored as 'ZoÃ«'; with a byte order mark (.NET) the night failed as 'not JSON, a web page?'."""
    from tests.connectors.scripted_server import serving

    with serving(lambda query, number: (200, {"Content-Type": content_type}, body)) as served:
        [record] = list(_served_connector(served).records())
    assert record.fields == {"id": 1, "voornaam": "Zoë"}


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json"])
def test_an_answer_that_is_not_the_text_it_claims_is_refused_not_stored_with_replacement_characters(content_type):
    """Windows-1252 bytes under a UTF-8 label became 'Zo\ufffd' in the stored name, silently."""
    from tests.connectors.scripted_server import serving

    body = json.dumps(_ZOE, ensure_ascii=False).encode("cp1252")
    with serving(lambda query, number: (200, {"Content-Type": content_type}, body)) as served:
        with pytest.raises(ConnectorError) as caught:
            list(_served_connector(served).records())
    said = str(caught.value)
    assert "is not valid UTF-8" in said and "charset" in said and "Zo" not in said


def test_a_proxys_error_page_in_another_charset_is_still_named_a_web_page():
    from tests.connectors.scripted_server import serving

    page = "<html><body>Storing: probeer het later opnieuw — Gemeente</body></html>".encode("cp1252")
    with serving(lambda query, number: (200, {"Content-Type": "text/html; charset=utf-8"}, page)) as served:
        with pytest.raises(ConnectorError, match="not JSON.*text/html"):
            list(_served_connector(served).records())


def test_an_api_that_answers_the_same_page_again_is_refused_not_read_as_more_cardholders():
    """An API that does not know options.offset_param ignores it and answers its first page for every offset:
    the connector read that page over and over until the total, the real rest never, so the sync saw every pass
    of page 1 several times and the others gone."""
    from tests.connectors.scripted_server import serving

    first_page = {"total": 6, "pashouders": [{"id": 1}, {"id": 2}]}
    with serving(lambda query, number: _json_answer(first_page)) as served:
        with pytest.raises(ConnectorError) as caught:
            list(_served_connector(served).records())
    said = str(caught.value)
    assert "the same page for offset 2 as for offset 0" in said and "options.offset_param" in said
    assert len(served.requests) == 2


def _paged(records, reported_total):  # type: ignore[no-untyped-def]
    def answer(query, number):  # type: ignore[no-untyped-def]
        offset, limit = int(query["offset"]), int(query["limit"])
        return _json_answer({"total": reported_total, "pashouders": records[offset:offset + limit]})
    return answer


def test_an_api_whose_total_stops_short_of_its_records_is_refused_not_read_in_part():
    """A total capped by the vendor's search index (10,000 of 40,000): the connector stopped at the total, and on
    a first load, which no guard compares with a previous run, three quarters of the children got nothing."""
    from tests.connectors.scripted_server import serving

    with serving(_paged([{"id": n} for n in range(6)], reported_total=4)) as served:
        with pytest.raises(ConnectorError) as caught:
            list(_served_connector(served).records())
    said = str(caught.value)
    assert "total of 4" in said and "more records after them" in said and "nothing" in said
    assert [query["offset"] for _, query in served.requests] == ["0", "2", "4"]


@pytest.mark.parametrize("count", [4, 5])
def test_a_true_total_is_read_to_its_end_with_one_look_past_a_full_last_page(count):
    from tests.connectors.scripted_server import serving

    with serving(_paged([{"id": n} for n in range(count)], reported_total=count)) as served:
        records = list(_served_connector(served).records())
    assert [record.fields["id"] for record in records] == list(range(count))
    # 4 records in pages of 2: the full last page is followed by a look at offset 4, which is empty.
    assert [query["offset"] for _, query in served.requests] == ["0", "2", "4"]


def test_a_key_refused_mid_run_says_the_run_was_under_way_and_nothing_was_applied():
    """A vendor that rotates or expires keys on a schedule refuses the key after some pages: the error said only
    to check that the variable holds the current key, which it did when the run began."""
    from tests.connectors.scripted_server import serving

    records = [{"id": n} for n in range(6)]
    paged = _paged(records, reported_total=6)

    def expires(query, number):  # type: ignore[no-untyped-def]
        return paged(query, number) if number < 2 else (401, {"Content-Type": "application/json"}, b"{}")

    with serving(expires) as served:
        with pytest.raises(SourceAuthError) as caught:
            list(_served_connector(served).records())
    said = str(caught.value)
    assert "HTTP 401" in said and "after 4 of 6 records" in said and "during the run" in said
    assert "TEST_PASS_API_KEY" in said and "secret-key-1" not in said


def test_connectors_check_asks_once_and_names_a_rate_limit_at_once():
    """The check is run at a terminal: with the run's retries, a rate-limited API's Retry-After (up to 5 minutes
    an attempt) held the operator for up to a quarter of an hour before any answer."""
    from tests.connectors.scripted_server import serving

    with serving(lambda query, number: (429, {"Retry-After": "120"}, b"")) as served:
        started = time.monotonic()
        result = _served_connector(served, retries=3).check()
        waited = time.monotonic() - started
    assert len(served.requests) == 1 and waited < 60
    said = result.render()
    assert not result.ok and "HTTP 429 (too many requests)" in said and "rate limit" in said


def test_the_waits_for_a_busy_api_are_logged_and_keep_the_sync_from_taking_the_source_for_stalled(caplog):
    """Each wait for a server's Retry-After (up to 5 minutes) was silent: the operator saw nothing for minutes,
    and the sync, hearing nothing from its reading worker for sync.read_stall_minutes, stopped the run as 'the
    source sent nothing', of an API that answered every request. Here 4 waits of 1 s, a stall deadline of 3 s."""
    from adapter.settings import SourceSettings
    from adapter.sources import read_source
    from tests.connectors.scripted_server import serving

    def busy_at_first(query, number):  # type: ignore[no-untyped-def]
        if number < 4:
            return 429, {"Retry-After": "1"}, b""
        return 200, {"Content-Type": "application/json"}, \
            (SAMPLES / f"pashouders-offset-{int(query['offset'])}.json").read_bytes()

    with serving(busy_at_first) as served:
        source = SourceSettings(connector="rest", mapping=Path(__file__).parents[2] / "mappings" / "demo-rest.yaml",
                                options={"base_url": served.base_url + "/rest", "api_key_env": "TEST_PASS_API_KEY",
                                         "page_size": 2, "backoff_seconds": 0, "retries": 4})
        with caplog.at_level("WARNING"), read_source(source, source_name="pass", stall_seconds=3.0) as records:
            read = list(records)
    assert read and all(isinstance(record, CardholderRecord) for record in read)
    waits = [record.getMessage() for record in caplog.records if "asking again" in record.getMessage()]
    assert waits == [f"source 'pass': the API at {served.base_url}/rest answered HTTP 429 (too many requests); "
                     f"asking again in 1 s (attempt {number} of 5)" for number in range(2, 6)]


def test_a_gateways_408_timeout_is_asked_again_not_a_refusal():
    """A gateway that timed the request out answers 408: the API was slow, nothing was refused (it failed the
    night at once with "refused the request, check the paging and query options")."""
    from tests.connectors.scripted_server import serving

    def slow_once(query, number):  # type: ignore[no-untyped-def]
        if number == 0:
            return 408, {"Content-Type": "text/html"}, b"<html><body>408 Request Time-out</body></html>"
        return _json_answer({"total": 1, "pashouders": [{"id": 1}]})

    with serving(slow_once) as served:
        records = list(_served_connector(served, retries=1).records())
    assert [record.fields for record in records] == [{"id": 1}] and len(served.requests) == 2
