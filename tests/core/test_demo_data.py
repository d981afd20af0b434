"""The made-up export generator: deterministic, valid, realistic shares, readable by the real connectors."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from stdnum.nl import bsn as bsn_number

from adapter.cli import cli
from adapter.demo_data import (
    MAX_HOUSEHOLDS, _BsnSource, bsn_check_digit, households_for_rows, iter_households, write,
)
from adapter.records import CardholderRecord, RejectedRecord
from adapter.registry import ConnectorRegistry
from adapter.sources import iter_mapped, map_records
from adapter.mapping import load_mapping
from connectors.replay import replay_session
from connectors.rest import RestConnector
from connectors.soap import SAMPLE_WSDL, SoapConnector
from tests.conftest import REPO, make_source

PASS_YEAR = 2026
TODAY = date(2026, 12, 1)
HOUSEHOLDS = 5_000  # about 20,000 pass rows: enough for the shares to settle


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    tonight, next_night = folder / "tonight.csv", folder / "next-night.csv"
    write("csv", tonight, HOUSEHOLDS, seed=7, pass_year=PASS_YEAR)
    write("csv", next_night, HOUSEHOLDS, seed=7, pass_year=PASS_YEAR, next_night=True)
    return tonight, next_night


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="cp1252", newline="") as stream:
        return list(csv.DictReader(stream, delimiter=";"))


@pytest.mark.parametrize("fmt", ["csv", "soap", "rest"])
def test_the_same_seed_gives_byte_identical_output_and_another_seed_does_not(tmp_path, fmt):
    def files(seed: int, name: str) -> dict[str, bytes]:
        out = tmp_path / name
        write(fmt, out, 300, seed=seed, pass_year=PASS_YEAR, page_size=100)
        paths = [out] if out.is_file() else sorted(out.iterdir())
        return {path.name: path.read_bytes() for path in paths}

    first, again, other = files(3, "a"), files(3, "b"), files(4, "c")
    assert list(first.values()) == list(again.values())
    assert list(first.values()) != list(other.values())


def test_the_cli_writes_the_same_file_twice(tmp_path):
    runner = CliRunner()
    for name in ("one.csv", "two.csv"):
        result = runner.invoke(cli, ["demo-data", "--households", "50", "--out", str(tmp_path / name),
                                     "--seed", "11", "--pass-year", str(PASS_YEAR)])
        assert result.exit_code == 0, result.output
        assert "pass rows of 50 households" in result.output
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()


def test_bsns_are_eleven_proof_in_the_fake_range_and_eight_digit_ones_pad_to_valid(export):
    rows = read_rows(export[0])
    short = [row["BSN"] for row in rows if len(row["BSN"]) == 8]
    assert 0.005 < len(short) / len(rows) < 0.05  # some lost their leading zero, most did not
    for row in rows:
        padded = row["BSN"].zfill(9)
        assert len(row["BSN"]) in (8, 9)
        assert bsn_number.is_valid(padded), "every BSN, padded to 9 digits, passes the 11-proof"
        assert padded.startswith(("99", "0999"))
    assert bsn_check_digit("99999365") == 3  # 999993653, a published BRP test number


def test_every_person_has_a_bsn_of_their_own():
    # One person, one BSN: the sync rejects a BSN twice in one export (the same child twice).
    people = [person for household in iter_households(20_000, seed=3) for person in household.members]
    assert len(people) > 40_000
    assert len({person.bsn for person in people}) == len(people)


def test_households_have_one_or_two_adults_and_one_to_four_children():
    for household in iter_households(500, seed=2, pass_year=PASS_YEAR):
        adults = sum(not member.is_child for member in household.members)
        children = sum(member.is_child for member in household.members)
        assert 1 <= adults <= 2 and 1 <= children <= 4


def test_blocked_and_replaced_shares_are_about_one_and_a_half_percent(export):
    rows = read_rows(export[0])
    statuses = Counter(row["Status"] for row in rows)
    assert 0.006 < statuses["Geblokkeerd"] / len(rows) < 0.014
    assert 0.002 < statuses["Vervangen"] / len(rows) < 0.008
    assert set(statuses) == {"Actief", "Geblokkeerd", "Vervangen"}


def test_names_carry_diacritics_in_windows_1252(export):
    raw = export[0].read_bytes()
    assert "Zoë".encode("cp1252") in raw or "Noël".encode("cp1252") in raw
    assert re.search("[ëéïöç]".encode("cp1252"), raw)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_the_next_night_changes_about_one_percent_of_the_rows(export):
    tonight, next_night = read_rows(export[0]), read_rows(export[1])
    assert [row["Pasnummer"] for row in tonight] == [row["Pasnummer"] for row in next_night]
    changed = sum(a != b for a, b in zip(tonight, next_night))
    assert 0.005 < changed / len(tonight) < 0.015


def test_the_csv_reads_back_through_the_real_connector_and_mapping_without_rejects(export):
    source = make_source("csv", REPO / "mappings" / "demo-csv.yaml", {"path": str(export[0])})
    results = list(iter_mapped(source, ConnectorRegistry().load_entry_points(), today=TODAY))
    rejected = [result for result in results if isinstance(result, RejectedRecord)]
    assert rejected == []
    assert len(results) == len(read_rows(export[0]))
    assert {result.pass_status.value for result in results} == {"active", "blocked", "replaced"}
    assert all(len(result.bsn) == 9 for result in results)


def test_soap_pages_read_back_through_the_soap_connector_without_rejects(tmp_path):
    written = write("soap", tmp_path / "soap", 120, seed=5, pass_year=PASS_YEAR, page_size=50)
    assert written.files == 3
    endpoint = "http://127.0.0.1:9/soap/v1"

    def answer(request):
        page = int(re.search(rb"<(?:\w+:)?pagina>(\d+)<", request.body).group(1))
        return 200, {"Content-Type": "text/xml; charset=utf-8"}, (tmp_path / "soap" / f"page-{page}.xml").read_bytes()

    connector = SoapConnector({
        "wsdl": str(SAMPLE_WSDL), "operation": "zoekPashouders", "endpoint": endpoint,
        "arguments": {"gemeentecode": "0599"}, "records_path": "huishouden",
        "paging": {"style": "continuation", "page_size": 50}, "retries": 0,
    }, session=replay_session(answer, endpoint))
    results = list(map_records(connector, load_mapping(REPO / "mappings" / "demo-soap.yaml"), today=TODAY))
    assert [result for result in results if isinstance(result, RejectedRecord)] == []
    assert len(results) == written.rows
    replacing = [result for result in results if isinstance(result, CardholderRecord) and result.replaces_pass_number]
    assert all(result.replaces_pass_number.isdigit() for result in replacing)


def rest_pages_read(folder: Path, households: int, monkeypatch, page_size: int = 50) -> list:
    """Every record of the REST pages in ``folder``, read through the real connector and the demo mapping, as an
    API serving those pages would answer (an empty page past the last, which a full last page is looked past to)."""
    base_url = "http://127.0.0.1:9/rest/v1"
    monkeypatch.setenv("BENCH_TEST_PASS_KEY", "not-a-real-key")

    def answer(request):
        offset = int(re.search(r"offset=(\d+)", request.url).group(1))
        page = folder / f"pashouders-offset-{offset}.json"
        body = page.read_bytes() if page.exists() else json.dumps(
            {"total": households, "offset": offset, "limit": page_size, "pashouders": []}).encode()
        return 200, {"Content-Type": "application/json"}, body

    connector = RestConnector({"base_url": base_url, "api_key_env": "BENCH_TEST_PASS_KEY", "page_size": page_size,
                               "retries": 0}, session=replay_session(answer, base_url))
    return list(map_records(connector, load_mapping(REPO / "mappings" / "demo-rest.yaml"), today=TODAY))


def test_rest_pages_read_back_through_the_rest_connector_without_rejects(tmp_path, monkeypatch):
    written = write("rest", tmp_path / "rest", 120, seed=5, pass_year=PASS_YEAR, page_size=50)
    results = rest_pages_read(tmp_path / "rest", 120, monkeypatch)
    assert [result for result in results if isinstance(result, RejectedRecord)] == []
    assert len(results) == written.rows


def test_a_rest_export_synced_again_is_unchanged_and_its_replaced_cards_stay_replaced(tmp_path, monkeypatch, db,
                                                                                      vault):
    """The REST format has no status "replaced": such a card comes as `actief: false`, which the demo mapping reads
    as blocked. Its successor names it (`originele_pas`), which makes it replaced all the same, and on every night,
    not only the first: a second night that read it as blocked again would update it and count it as newly blocked."""
    from sqlalchemy import func, select

    from adapter.models import Pass, PassState
    from adapter.settings import SyncSettings
    from adapter.sync import run_sync

    write("rest", tmp_path / "rest", 1_000, seed=4, pass_year=PASS_YEAR, page_size=50)
    replaced = {card.number for household in iter_households(1_000, seed=4, pass_year=PASS_YEAR)
                for person in household.members for card in person.passes if card.status == "replaced"}
    assert len(replaced) >= 5
    for night in ("first", "second"):
        result = run_sync(db, vault, "demo", rest_pages_read(tmp_path / "rest", 1_000, monkeypatch),
                          settings=SyncSettings(), today=TODAY)
        assert result.ok and result.rejected == 0, result.summary()
        with db.read() as session:
            stored = dict(session.execute(select(Pass.pass_number, Pass.status)
                                          .where(Pass.pass_number.in_(replaced))).all())
            assert stored == dict.fromkeys(replaced, PassState.REPLACED), night
            assert session.scalar(select(func.count()).select_from(Pass)) == result.records_read
    assert (result.created, result.updated, result.unchanged) == (0, 0, result.records_read)


def test_households_for_rows_lands_near_the_asked_row_count(tmp_path):
    written = write("csv", tmp_path / "x.csv", households_for_rows(4_000), seed=1, pass_year=PASS_YEAR)
    assert 3_600 < written.rows < 4_400


@pytest.mark.parametrize("fmt", ["csv", "soap"])
def test_output_is_streamed_so_memory_does_not_grow_with_size(tmp_path, fmt):
    import tracemalloc

    def peak_bytes(households: int) -> int:
        tracemalloc.start()
        try:
            write(fmt, tmp_path / f"{fmt}-{households}", households, seed=1, pass_year=PASS_YEAR, page_size=100)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_bytes(100), peak_bytes(1_000)
    # Ten times the households, not ten times the memory: one household (or page) at a time.
    assert large < 2 * small


@pytest.mark.parametrize("fmt, out_name, says", [
    ("csv", ".", "is a folder, and --format csv writes one file; give a file name"),
    ("soap", "file.csv", "is a file, and --format soap writes a folder of pages"),
    ("rest", "file.csv", "is a file, and --format rest writes a folder of pages"),
    ("csv", "file.csv/tonight.csv", "file.csv is a file, so"),
])
def test_an_out_path_of_the_wrong_kind_is_an_operator_error_not_a_crash(tmp_path, fmt, out_name, says):
    (tmp_path / "file.csv").write_text("an earlier export")
    result = CliRunner().invoke(cli, ["demo-data", "--households", "3", "--format", fmt,
                                      "--out", str(tmp_path / out_name)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output and says in result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, not a traceback
    assert (tmp_path / "file.csv").read_text() == "an earlier export"


def test_a_full_disk_is_said_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["demo-data", "--households", "50", "--out", "/dev/full"])
    assert result.exit_code == 1
    assert "could not write the export to /dev/full: No space left on device" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("fmt", ["soap", "rest"])
def test_a_smaller_export_into_the_same_folder_leaves_none_of_the_earlier_pages(tmp_path, fmt):
    out = tmp_path / fmt
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("the operator's own file")
    write(fmt, out, 500, seed=1, pass_year=PASS_YEAR, page_size=100)
    written = write(fmt, out, 150, seed=1, pass_year=PASS_YEAR, page_size=100)
    pages = sorted(path.name for path in out.iterdir() if path.name != "notes.txt")
    assert len(pages) == written.files == 2
    assert (out / "notes.txt").read_text() == "the operator's own file"


def test_the_leading_zero_range_lasts_for_the_largest_export():
    # 2% of the ~4 million people of MAX_HOUSEHOLDS households lose their leading zero: about 80,000 BSNs.
    # The range once held 36,363, so an export of ~450,000 households stopped halfway with
    # "generator raised StopIteration".
    bsns = _BsnSource()
    wanted = int(MAX_HOUSEHOLDS * 4.03 * 0.02 * 1.25)
    drawn = [bsns.next(lost_leading_zero=True) for _ in range(wanted)]
    assert len(set(drawn)) == wanted
    assert all(bsn.startswith("09") and bsn_number.is_valid(bsn) for bsn in drawn[::997] + drawn[-3:])


def test_more_households_than_the_fake_ranges_hold_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "huge.csv"
    result = CliRunner().invoke(cli, ["demo-data", "--households", str(MAX_HOUSEHOLDS + 1), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{MAX_HOUSEHOLDS + 1} is not in the range 1<=x<={MAX_HOUSEHOLDS}" in result.output
    assert not out.exists()
    with pytest.raises(ValueError, match="households: the generator makes 0 to 1,000,000"):
        write("csv", out, MAX_HOUSEHOLDS + 1)


def test_a_child_whose_lost_card_was_replaced_gets_the_budgets_of_one_who_kept_it(tmp_path, db, vault):
    """The budget follows the child, not the card. The generated export replaces 0.5% of cards during the
    pass year, the new card valid from that day on. Synced with the shipped rules, each such child must
    hold what the same child would with its first card: it held a valid pass on every reference day."""
    from sqlalchemy import select

    from adapter.models import Budget, Pass
    from adapter.rules import PassFacts, load_rules
    from adapter.settings import SyncSettings
    from adapter.sync import run_sync

    export = tmp_path / "stadspas-2026-12-01.csv"
    write("csv", export, 2_000, seed=4, pass_year=PASS_YEAR)
    rules = load_rules(REPO / "config" / "budgets.yaml")
    source = make_source("csv", REPO / "mappings" / "demo-csv.yaml", {"path": str(export)})
    result = run_sync(db, vault, "demo", iter_mapped(source, ConnectorRegistry().load_entry_points(), today=TODAY),
                      settings=SyncSettings(), rules=rules, today=TODAY)
    assert result.ok and result.rejected == 0

    replaced = [(child, child.passes[0], child.passes[-1])
                for household in iter_households(2_000, seed=4, pass_year=PASS_YEAR)
                for child in household.members if child.is_child and child.passes[0].status == "replaced"]
    assert len(replaced) >= 5
    with db.read() as session:
        for child, first_card, new_card in replaced:
            holder_id = session.scalar(select(Pass.cardholder_id).where(Pass.pass_number == new_card.number))
            granted = dict(session.execute(select(Budget.rule_code, Budget.granted_cents)
                                           .where(Budget.cardholder_id == holder_id)).all())
            kept_card = [PassFacts("active", first_card.valid_from, first_card.valid_until)]
            entitled = {rule.code: rule.entitlement_cents(period, child.birth_date, True, kept_card)
                        for rule, period in rules.current(TODAY)}
            assert granted == {code: cents for code, cents in entitled.items() if cents}, \
                (new_card.valid_from, child.birth_date)


@pytest.mark.parametrize("pass_year", ["0", "-5", "9999", "1900"])
def test_a_pass_year_no_export_can_have_is_a_usage_error(tmp_path, pass_year):
    # Year 0 and 9999 crashed with a traceback (a date out of range); 1900 wrote adults born in the 1840s,
    # whom the sync then rejects.
    result = CliRunner().invoke(cli, ["demo-data", "--households", "2", "--pass-year", pass_year,
                                      "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--pass-year': {pass_year} is not in the range 2000<=x<=2100" in result.output
    assert not (tmp_path / "x.csv").exists()
