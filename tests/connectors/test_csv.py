import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adapter.connector import ConnectorConfigError, ConnectorError
from adapter.mapping import load_mapping
from adapter.records import CardholderRecord, RejectedRecord
from adapter.sources import map_records
from connectors.csv_file import CsvConnector

REPO = Path(__file__).parents[2]
DEMO_MAPPING = load_mapping(REPO / "mappings" / "demo-csv.yaml")
HEADER = ("Huishoudnummer;Klantnummer;BSN;Voornamen;Voorvoegsel;Achternaam;Geboortedatum;"
          "Pasnummer;Status;Geldig vanaf;Geldig tot;Categorie;Saldo")


def row(bsn="999993653", first_names="Anouk", pass_number="6064366011000001", household="H1"):
    return (f"{household};K-{pass_number[-4:]};{bsn};{first_names};de;Vries;14-03-2014;{pass_number};"
            "Actief;01-08-2026;31-07-2027;K;12,50")


def write(path: Path, lines, encoding="utf-8"):
    path.write_text("".join(line + "\r\n" for line in lines), encoding=encoding, newline="")
    return path


def read_mapped(path, **options):
    connector = CsvConnector({"path": str(path), **options}, source_name="test")
    return list(map_records(connector, DEMO_MAPPING))


def test_windows_1252_names_with_diaereses_and_accents(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(first_names="Zoë"), row(
        bsn="999993847", first_names="René", pass_number="6064366011000002")], encoding="cp1252")
    connector = CsvConnector({"path": str(export)})
    assert connector.detect_encoding(export) == "cp1252"
    records = read_mapped(export)
    assert [record.first_names for record in records] == ["Zoë", "René"]


def test_utf8_with_bom_does_not_leak_into_the_first_column_name(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(first_names="Noël")], encoding="utf-8-sig")
    [source_record] = list(CsvConnector({"path": str(export)}))
    assert "Huishoudnummer" in source_record.fields
    [record] = read_mapped(export)
    assert (record.household_id, record.first_names) == ("H1", "Noël")


def test_explicit_encoding_is_used(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(first_names="Zoë")], encoding="cp1252")
    [record] = read_mapped(export, encoding="cp1252")
    assert record.first_names == "Zoë"
    with pytest.raises(ConnectorError, match="not valid utf-8"):
        read_mapped(export, encoding="utf-8")


def test_bsn_with_lost_leading_zero_is_padded(tmp_path):
    export = write(tmp_path / "export.csv",
                   [HEADER, row(bsn="9921"), row(bsn="00009921", pass_number="6064366011000002")])
    records = read_mapped(export)
    assert [record.bsn for record in records] == ["000009921", "000009921"]


def test_row_with_too_few_columns_is_rejected_and_the_rest_read(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(), "H1;K2;999993847;Zoë", row(
        bsn="999992077", pass_number="6064366011000003")])
    results = read_mapped(export)
    assert [type(result) for result in results] == [CardholderRecord, RejectedRecord, CardholderRecord]
    assert results[1].source_key == "line 3"
    assert results[1].reasons == ("row has 4 columns, the header has 13",)
    assert results[2].source_key == "line 4"


def test_invalid_values_are_rejected_with_line_and_reason(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(bsn="999993654")])
    [rejected] = read_mapped(export)
    assert rejected == RejectedRecord(
        "line 2", ("bsn: fails the BSN 11-proof (9 digits, weighted sum divisible by 11)",))


def test_empty_file_and_header_only_give_no_records(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert read_mapped(empty) == []
    empty_check = CsvConnector({"path": str(empty)}, source_name="demo").check()
    assert not empty_check.ok and "is empty" in empty_check.render()
    header_only = write(tmp_path / "header.csv", [HEADER])
    assert read_mapped(header_only) == []
    assert CsvConnector({"path": str(header_only)}).check().ok


def test_skip_rows_quote_char_delimiter_and_no_header(tmp_path):
    export = tmp_path / "export.txt"
    export.write_text("Export stadspas 28-11-2026\n'H1'|'K1'|'6064,3660'\n", encoding="utf-8")
    connector = CsvConnector({"path": str(export), "skip_rows": 1, "delimiter": "|", "quote_char": "'",
                              "header": False, "columns": ["H", "K", "P"], "decimal_comma_columns": ["P"]})
    [record] = list(connector)
    assert record.key == "line 2"
    assert dict(record.fields) == {"H": "H1", "K": "K1", "P": "6064.3660"}


def test_folder_of_dated_exports_newest_wins(tmp_path):
    write(tmp_path / "stadspas-2026-11-27.csv", [HEADER, row(first_names="Oud")])
    write(tmp_path / "stadspas-2026-11-28.csv", [HEADER, row(first_names="Nieuw")])
    write(tmp_path / "notes.txt", ["not an export"])
    [record] = read_mapped(tmp_path)
    assert record.first_names == "Nieuw"
    # By modification time the older-named file can win: the operator chooses.
    os.utime(tmp_path / "stadspas-2026-11-27.csv", (time.time() + 60, time.time() + 60))
    [record] = read_mapped(tmp_path, newest_by="mtime")
    assert record.first_names == "Oud"


def test_missing_export_and_bad_options_are_operator_readable(tmp_path):
    with pytest.raises(ConnectorError) as caught:
        read_mapped(tmp_path / "missing.csv")
    assert "source 'test'" in str(caught.value) and "does not exist" in str(caught.value)
    with pytest.raises(ConnectorError, match="holds no file matching"):
        read_mapped(tmp_path)
    bad = CsvConnector({"path": "x.csv", "encoding": "latin-9", "delimter": ","}, source_name="demo")
    with pytest.raises(ConnectorConfigError) as caught:
        list(bad)
    assert "encoding" in str(caught.value) and "delimter: unknown option" in str(caught.value)


def test_relative_path_resolves_against_base_dir(tmp_path):
    write(tmp_path / "export.csv", [HEADER, row()])
    connector = CsvConnector({"path": "export.csv"}, base_dir=tmp_path)
    assert len(list(connector)) == 1


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    from connectors.csv_file import CsvConnector
    connector = CsvConnector({"path": sys.argv[1]})
    next(iter(CsvConnector({"path": sys.argv[1]})))  # warm up imports and codecs
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = sum(1 for _ in connector)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(count, (after - before) / 1024)  # ru_maxrss is in KiB on Linux
""")


def peak_rss_growth_mb(path: Path) -> tuple[int, float]:
    output = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True,
                            text=True, check=True, cwd=REPO).stdout.split()
    return int(output[0]), float(output[1])


def test_streaming_memory_does_not_grow_with_file_size(tmp_path):
    def generate(path, count):
        with path.open("w", encoding="utf-8", newline="") as stream:
            stream.write(HEADER + "\r\n")
            for number in range(count):
                stream.write(row(pass_number=f"60643660{number:08d}", household=f"H{number}") + "\r\n")
        return path

    small_count, small_growth = peak_rss_growth_mb(generate(tmp_path / "small.csv", 20_000))
    large_count, large_growth = peak_rss_growth_mb(generate(tmp_path / "large.csv", 200_000))
    assert (small_count, large_count) == (20_000, 200_000)
    # The large file is ~20 MB; holding it would grow RSS by far more than 10 MB.
    assert large_growth < 50
    assert large_growth - small_growth < 10, (small_growth, large_growth)


def test_a_quote_left_open_is_an_operator_error_naming_the_line_not_a_traceback(tmp_path):
    """The rest of the file is read as one field until the csv module's limit: the sync must say where, and
    never what the field held."""
    broken = row(first_names='"Anouk')
    export = write(tmp_path / "export.csv", [HEADER, row(), broken] + [row(household=f"H{n}") for n in range(2, 6000)])
    with pytest.raises(ConnectorError) as caught:
        read_mapped(export)
    said = str(caught.value)
    assert "cannot be read as CSV near line 3:" in said and "quote that is not closed" in said  # where it opens
    assert "Anouk" not in said and "Vries" not in said


def test_a_header_that_names_a_column_twice_is_refused(tmp_path):
    """Which of the two a mapping reads would be a guess: the last one, here the balance taken for the BSN."""
    export = write(tmp_path / "export.csv", [HEADER.replace("Saldo", "BSN"), row()])
    with pytest.raises(ConnectorError, match=r"names a column more than once \(BSN\)"):
        read_mapped(export)


def test_a_column_the_mapping_reads_missing_from_the_header_is_refused_not_read_as_empty(tmp_path):
    """'Bsn' for 'BSN': every record would map without its BSN, and nothing would say so."""
    export = write(tmp_path / "export.csv", [HEADER.replace(";BSN;", ";Bsn;"), row()])
    with pytest.raises(ConnectorError, match="the source has no column BSN, which the mapping demo-csv.yaml reads"):
        read_mapped(export)
    assert [type(result) for result in read_mapped(write(tmp_path / "ok.csv", [HEADER, row()]))] == [CardholderRecord]


def test_a_record_spanning_lines_is_keyed_by_the_line_it_begins_on(tmp_path):
    """A quoted field with a line break: the operator looks for the record where it starts."""
    export = write(tmp_path / "export.csv", [HEADER, row(first_names='"Anouk\r\nMarie"'), row(
        bsn="999992077", pass_number="6064366011000003")])
    results = read_mapped(export)
    assert [result.source_key for result in results] == ["line 2", "line 4"]


def test_an_excel_utf8_export_reads_with_encoding_set_to_utf8(tmp_path):
    """Excel's 'CSV UTF-8' starts with a byte order mark. With options.encoding: utf-8 (what such an export is)
    the mark stuck to the first column's name, and the night was refused: 'the source has no column
    Huishoudnummer', under a header that plainly has it."""
    export = write(tmp_path / "export.csv", [HEADER, row(first_names="Noël")], encoding="utf-8-sig")
    [record] = read_mapped(export, encoding="utf-8")
    assert (record.household_id, record.first_names) == ("H1", "Noël")
    assert CsvConnector({"path": str(export), "encoding": "utf-8"}).check().ok


def test_a_utf8_export_read_as_cp1252_is_named_not_taken_for_a_missing_column(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(first_names="Noël")], encoding="utf-8-sig")
    with pytest.raises(ConnectorError) as caught:
        read_mapped(export, encoding="cp1252")
    said = str(caught.value)
    assert "starts with a UTF-8 byte order mark" in said and "options.encoding" in said and "auto" in said
    check = CsvConnector({"path": str(export), "encoding": "cp1252"}, source_name="demo").check()
    assert not check.ok and "byte order mark" in check.render()


@pytest.mark.parametrize("delimiter, said", [(",", "','"), ("\t", "a tab")])
def test_an_export_with_another_delimiter_says_which_one_it_has(tmp_path, delimiter, said):
    """A back office that switches its export to commas (or tabs) gave 'the source has no column Huishoudnummer,
    Klantnummer, BSN, ... (a renamed or missing column?)': every name is there, the separator is not."""
    export = write(tmp_path / "export.csv", [HEADER.replace(";", delimiter),
                                             row().replace("12,50", "12.50").replace(";", delimiter)])
    with pytest.raises(ConnectorError) as caught:
        read_mapped(export)
    message = str(caught.value)
    assert "no ';' (options.delimiter)" in message and f"separated by {said}" in message
    assert "Huishoudnummer" not in message  # a header's names say nothing the operator needs here
    check = CsvConnector({"path": str(export)}, source_name="demo").check()
    assert not check.ok and "options.delimiter" in check.render()


def test_an_export_older_than_max_age_hours_is_refused_not_synced_again(tmp_path):
    """A night whose export did not arrive re-read the one before, and the run succeeded 'unchanged': a pass
    blocked since (a lost card) stayed usable and new children waited, night after night, with nothing in red."""
    write(tmp_path / "stadspas-2026-11-27.csv", [HEADER, row()])
    two_days_ago = time.time() - 49 * 3600
    os.utime(tmp_path / "stadspas-2026-11-27.csv", (two_days_ago, two_days_ago))
    with pytest.raises(ConnectorError) as caught:
        read_mapped(tmp_path, max_age_hours=36)
    said = str(caught.value)
    assert "stadspas-2026-11-27.csv was written 2 days ago" in said and "options.max_age_hours is 36" in said
    assert "export job" in said
    check = CsvConnector({"path": str(tmp_path), "max_age_hours": 36}, source_name="demo").check()
    assert not check.ok and "2 days ago" in check.render()
    assert len(read_mapped(tmp_path)) == 1  # without the option any export is read, as before
    write(tmp_path / "stadspas-2026-11-28.csv", [HEADER, row()])  # tonight's arrives
    assert len(read_mapped(tmp_path, max_age_hours=36)) == 1


def test_rows_of_only_separators_are_blank_lines_not_rejected_cardholders(tmp_path):
    """Excel saves rows it once formatted as ';;;;;;': each came out as a rejected record every night
    ('household_id: is missing, pass_number: is missing, ...'), counted against the guard's share."""
    export = write(tmp_path / "export.csv", [HEADER, row(), ";" * 12, " ; ;", ""])
    results = read_mapped(export)
    assert [type(result) for result in results] == [CardholderRecord]


def test_a_pass_number_a_spreadsheet_rounded_rejects_its_row_instead_of_becoming_another_number(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(pass_number="6,06437E+15"), row(
        bsn="999993847", pass_number="6064366011000002")])
    rejected, kept = read_mapped(export)
    assert isinstance(rejected, RejectedRecord) and rejected.source_key == "line 2"
    assert any(reason.startswith("pass_number: is written in scientific notation") for reason in rejected.reasons)
    assert kept.pass_number == "6064366011000002"


@pytest.mark.parametrize("how", ["still written", "replaced"])
def test_an_export_that_changes_while_it_is_read_fails_the_read_instead_of_ending_early(tmp_path, how):
    """An export job running late was still writing when the sync read the file: the rows after the point reached
    were taken for cardholders gone from the export, and a row cut in two rejected, in a run that succeeded."""
    from adapter.connector import SourceUnavailable

    export = write(tmp_path / "export.csv", [HEADER, row(), row(bsn="999993847", pass_number="6064366011000002")])
    reading = iter(CsvConnector({"path": str(export)}, source_name="test").records())
    first = next(reading)
    assert first.fields["Pasnummer"] == "6064366011000001"
    if how == "still written":
        with export.open("a", encoding="utf-8", newline="") as stream:
            stream.write(row(bsn="999993872", pass_number="6064366011000003") + "\r\n")
    else:
        replacement = write(tmp_path / "export.new", [HEADER, row()])
        replacement.replace(export)
    with pytest.raises(SourceUnavailable) as caught:
        list(reading)
    said = str(caught.value)
    assert "export.csv changed while it was read" in said and "nothing of it was applied" in said
    assert "999993" not in said and "6064366011" not in said
    assert len(read_mapped(export)) >= 1  # read again once it is whole


def test_an_export_read_whole_is_not_taken_for_a_changed_one(tmp_path):
    export = write(tmp_path / "export.csv", [HEADER, row(), row(bsn="999993847", pass_number="6064366011000002")])
    assert len(read_mapped(export)) == 2
    assert len(read_mapped(export)) == 2
