"""CSV exports: a file, or a folder of dated exports where the newest wins.

Stadspas back offices drop a nightly export: semicolon-separated, Windows-1252
or UTF-8 with a BOM (Excel), dates as dd-mm-jjjj, Dutch decimal comma. Every
column is read as text; the mapping decides what it means. The file is
streamed row by row, so memory does not grow with its size.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TextIO

from pydantic import Field, model_validator

from adapter.connector import CheckBuilder, CheckResult, Connector, ConnectorError, ConnectorOptions, \
    SourceUnavailable
from adapter.records import SourceRecord

SAMPLES = Path(__file__).parent / "samples"
_DETECT_CHUNK_BYTES = 1 << 16
# The codec a file of each encoding is opened with. Excel's "CSV UTF-8" starts with a byte order mark, which
# plain utf-8 keeps as part of the first column's name; utf-8-sig drops it and reads a file without one the same.
_READ_AS = {"utf-8": "utf-8-sig"}
# The separators exports are written with, and how an operator is told each.
_DELIMITERS = {";": "';'", ",": "','", "\t": "a tab", "|": "'|'"}


class CsvOptions(ConnectorOptions):
    path: Path = Field(description="An export file, or a folder of dated exports (newest wins)")
    # Used when path is a folder; exports named with an ISO date sort by name.
    file_pattern: str = "*.csv"
    newest_by: Literal["name", "mtime"] = "name"
    delimiter: str = Field(default=";", min_length=1, max_length=1)
    encoding: Literal["auto", "utf-8", "utf-8-sig", "cp1252"] = "auto"
    quote_char: str = Field(default='"', min_length=1, max_length=1)
    header: bool = True
    # Column names when the export has no header row.
    columns: list[str] | None = None
    skip_rows: int = Field(default=0, ge=0, description="Lines before the header (titles, dates)")
    # Columns whose "12,50" becomes "12.50"; the values stay text.
    decimal_comma_columns: list[str] = []
    # Refuse an export written longer ago than this (36 suits a nightly export): a night whose export did not
    # arrive otherwise reads the previous one again, and succeeds as if nothing had changed.
    max_age_hours: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _columns_or_header(self) -> CsvOptions:
        if not self.header and not self.columns:
            raise ValueError("without a header row, list the column names in 'columns'")
        if self.delimiter == self.quote_char:
            raise ValueError("delimiter and quote_char must differ")
        return self


class CsvConnector(Connector):
    """Reads a CSV export file (or the newest in a folder)."""

    options_model = CsvOptions
    description = "CSV export: a file or a folder of dated exports (newest wins)"

    def current_file(self) -> Path:
        """The file to read: the path itself, or the newest export in the folder."""
        options: CsvOptions = self.options
        path = self.newest_export(options.path, options.file_pattern, options.newest_by)
        if options.max_age_hours is not None:
            self._refuse_stale(path, options.max_age_hours)
        return path

    def _refuse_stale(self, path: Path, max_age_hours: float) -> None:
        age_hours = (time.time() - path.stat().st_mtime) / 3600
        if age_hours <= max_age_hours:
            return
        age = f"{age_hours / 24:.0f} days" if age_hours >= 48 else f"{age_hours:.0f} hours"
        raise ConnectorError(self.source_name, f"the newest export {path.name} was written {age} ago "
                             f"(options.max_age_hours is {max_age_hours:g}); nothing was read",
                             "Check that the export job ran and that its file arrived, then run again; the "
                             "previous data stays in force until then")

    def detect_encoding(self, path: Path) -> str:
        """utf-8-sig with a BOM; utf-8 if the whole file decodes as such; else cp1252."""
        options: CsvOptions = self.options
        if options.encoding != "auto":
            if options.encoding == "cp1252":
                self._refuse_utf8_read_as_cp1252(path)
            return options.encoding
        with path.open("rb") as stream:
            first = stream.read(_DETECT_CHUNK_BYTES)
            if first.startswith(codecs.BOM_UTF8):
                return "utf-8-sig"
            # Scan in chunks so a late 'ë' is seen without loading the file.
            decoder = codecs.getincrementaldecoder("utf-8")()
            chunk = first
            try:
                while chunk:
                    decoder.decode(chunk)
                    chunk = stream.read(_DETECT_CHUNK_BYTES)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                return "cp1252"
        return "utf-8"

    def _refuse_utf8_read_as_cp1252(self, path: Path) -> None:
        # Read as cp1252 the mark becomes 'ï»¿' before the first column's name, and the night is refused for a
        # column missing from a header that has it (and every 'ë' would read as 'Ã«').
        with path.open("rb") as stream:
            if stream.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
                raise ConnectorError(self.source_name, f"the export {path.name} starts with a UTF-8 byte order mark, "
                                     "but options.encoding is cp1252", "Set options.encoding to auto (or utf-8)")

    def records(self) -> Iterator[SourceRecord]:
        options: CsvOptions = self.options
        path = self.current_file()
        encoding = self.detect_encoding(path)
        self._line_reached = 1  # where the row being read begins, for an error the csv module raises
        try:
            with path.open(encoding=_READ_AS.get(encoding, encoding), newline="") as stream:
                opened = os.fstat(stream.fileno())
                yield from self._read_rows(stream, options)
            self._refuse_changed_while_read(path, opened)
        except UnicodeDecodeError:
            raise ConnectorError(
                self.source_name,
                f"the export {path.name} is not valid {encoding}",
                "Set options.encoding to the export's encoding (auto, utf-8, utf-8-sig or cp1252)",
            ) from None
        except csv.Error as exc:
            # The csv module's own words name a limit or a quote, never a value. A field over its limit is a
            # quote left open (the rest of the file read as one field) or a column no export should hold.
            raise ConnectorError(
                self.source_name,
                f"the export {path.name} cannot be read as CSV near line {self._line_reached}: {exc}",
                "Look at that line in the export for a quote that is not closed (a field that starts with a quote "
                "but does not end with one), then export again",
            ) from None

    def _refuse_changed_while_read(self, path: Path, opened: os.stat_result) -> None:
        """An export job that ran late was still writing the file: its end was read as the export's end, the
        cardholders after it taken for gone, and a row cut in two rejected. Or the file was replaced meanwhile.
        Either way this read is not one export: the run fails, applying nothing, and the next one reads it whole."""
        try:
            now = path.stat()
        except OSError:
            now = None
        if now is not None and (now.st_ino, now.st_size, now.st_mtime_ns) == (
                opened.st_ino, opened.st_size, opened.st_mtime_ns):
            return
        raise SourceUnavailable(self.source_name, f"the export {path.name} changed while it was read (it was "
                                "still being written, or replaced); nothing of it was applied",
                                "Let the export job finish before the sync starts (or move the sync later), then "
                                "run again")

    def _read_rows(self, stream: TextIO, options: CsvOptions) -> Iterator[SourceRecord]:
        for _ in range(options.skip_rows):
            if not stream.readline():
                return
        reader = csv.reader(stream, delimiter=options.delimiter, quotechar=options.quote_char)
        line_offset = options.skip_rows
        self._line_reached = line_offset + 1
        if options.header:
            header = next(reader, None)
            if header is None:
                return
            self._refuse_another_delimiter(header, options.delimiter)
            columns = [name.strip() for name in header]
            repeated = sorted({name for name in columns if columns.count(name) > 1})
            if repeated:
                # Which of them a mapping would read is a guess: the last one, which may hold another field.
                raise ConnectorError(self.source_name, f"the export's header names a column more than once "
                                     f"({', '.join(repeated)})", "Rename the columns in the export so that each "
                                     "name is used once, or set options.header: false with options.columns")
        else:
            columns = list(options.columns or [])
        width = len(columns)
        decimal_columns = [name for name in options.decimal_comma_columns if name in columns]
        ended_at = reader.line_num  # the line the previous row ended on (a quoted field may hold line breaks)
        self._line_reached = ended_at + 1 + line_offset
        for row in reader:
            begun_at, ended_at = ended_at + 1, reader.line_num
            self._line_reached = ended_at + 1 + line_offset  # where the next row begins: an error reading it is there
            if not row or (not row[0].strip() and not any(field.strip() for field in row)):
                # A blank line, or one of separators only (rows Excel once formatted: ';;;;;'). The first field
                # alone is looked at for every other row: this loop is the floor of a sync's reading.
                continue
            # The line the row begins on: where an operator looks for it, also when a quoted field spans lines.
            key = f"line {begun_at + line_offset}"
            if len(row) != width:
                # A wrong column count means a broken quote or a stray delimiter: the
                # values may sit in the wrong columns, so the row is rejected, not guessed.
                yield SourceRecord(key, {}, (f"row has {len(row)} columns, the header has {width}",))
                continue
            fields = dict(zip(columns, row))  # the width is checked above
            for name in decimal_columns:
                fields[name] = fields[name].replace(".", "").replace(",", ".")
            yield SourceRecord(key, fields)

    def _refuse_another_delimiter(self, header: list[str], delimiter: str) -> None:
        """A header read as one column that holds another separator: the export is separated by that one. The
        mapping would otherwise refuse it for a column missing, under a header that names them all."""
        if len(header) != 1 or delimiter in header[0]:
            return
        found = next((label for other, label in _DELIMITERS.items() if other != delimiter and other in header[0]),
                     None)
        if found:
            shown = _DELIMITERS.get(delimiter, repr(delimiter))
            raise ConnectorError(self.source_name, f"the export's header has no {shown} (options.delimiter): its "
                                 f"columns are separated by {found}", "Set options.delimiter to the export's "
                                 "separator, or ask the back office to export as before")

    def check(self) -> CheckResult:
        check = CheckBuilder(self.source_name, "csv")
        if not check.options_valid(self):
            return check.result()
        check.passed("settings", "options are valid")
        try:
            path = self.current_file()
            encoding = self.detect_encoding(path)
            with path.open(encoding=_READ_AS.get(encoding, encoding), newline="") as stream:
                for _ in range(self.options.skip_rows):
                    stream.readline()
                first_line = stream.readline()
            if self.options.header:
                self._refuse_another_delimiter([first_line], self.options.delimiter)
        except ConnectorError as exc:
            check.failed_from("connection", exc)
            return check.result()
        except (OSError, UnicodeDecodeError) as exc:
            check.failed_with("connection", f"cannot read the export: {exc.__class__.__name__}. "
                              "Check file permissions and options.encoding")
            return check.result()
        if not first_line:
            check.failed_with("connection", f"the export {path.name} is empty. "
                              "Check that the export job finished")
        else:
            check.passed("connection", f"reads {path.name} ({encoding})")
        check.not_applicable("credentials", "a file needs no credentials")
        return check.result()

    @classmethod
    @contextlib.contextmanager
    def sample(cls) -> Iterator[CsvConnector]:
        yield cls({"path": str(SAMPLES / "csv" / "exports")}, source_name="sample-csv")
