"""CSV as Dutch Excel opens it: semicolons, UTF-8 with BOM, decimal comma for euros."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence


def euros_text(cents: int, *, symbol: bool = False) -> str:
    """12345 -> '123,45' (no floats; no thousands separator, so Excel reads it as a number)."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(int(cents)), 100)
    text = f"{sign}{whole},{rest:02d}"
    return f"€ {text}" if symbol else text


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "ja" if value else "nee"
    return str(value)


def to_csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([cell_text(value) for value in row])
    return "\ufeff".encode("utf-8") + buffer.getvalue().encode("utf-8")
