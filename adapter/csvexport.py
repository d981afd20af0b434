"""CSV as Dutch Excel opens it: semicolons, UTF-8 with BOM, decimal comma for euros."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence


# UTF-8's byte-order mark: how Dutch Excel knows a CSV file is UTF-8 rather than Windows-1252.
BYTE_ORDER_MARK = "\ufeff".encode("utf-8")


def euros_text(cents: int, *, symbol: bool = False, grouped: bool = False) -> str:
    """12345 -> '123,45' (no floats; no thousands separator, so Excel reads it as a number).
    ``grouped`` for a page a person reads: 6000000000 -> '60.000.000,00', not '60000000,00'."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(int(cents)), 100)
    whole_text = f"{whole:,}".replace(",", ".") if grouped else str(whole)
    text = f"{sign}{whole_text},{rest:02d}"
    return f"€ {text}" if symbol else text


# A cell a spreadsheet would run as a formula: text starting with one of these. A merchant's name is typed by
# municipal staff and a record key comes from the source system; opened in Excel, "=HYPERLINK(...)" would run.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# ... but a number, such as a negative amount in euros ("-12,50"), stays a number.
_NUMBER = re.compile(r"-?\d+(?:,\d+)?")


def cell_text(value: object) -> str:
    """A value as its cell's text; text that a spreadsheet would take for a formula gets a leading apostrophe,
    which shows it as the text it is (OWASP's advice for CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "ja" if value else "nee"
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def to_csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell_text(value) for value in row])
    return BYTE_ORDER_MARK + buffer.getvalue().encode("utf-8")
