"""JSON-lines exports: one cardholder document per line, dropped by SFTP into a folder.

Some vendors' nightly job uploads ``pashouders-YYYY-MM-DD.jsonl`` over SFTP. A file
still being uploaded is a risk: the connector skips files whose name ends in the
SFTP client's temporary suffix and refuses a last line without its newline.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from adapter.connector import CheckBuilder, CheckResult, Connector, ConnectorError, ConnectorOptions
from adapter.records import SourceRecord

SAMPLES = Path(__file__).parent / "samples"


class JsonLinesOptions(ConnectorOptions):
    path: Path = Field(description="A .jsonl file, or a folder of dated exports (newest wins)")
    file_pattern: str = "*.jsonl"
    newest_by: Literal["name", "mtime"] = "name"
    # A line longer than this is no cardholder: a broken export, refused rather than held in memory.
    max_line_bytes: int = Field(default=1_000_000, ge=1024)


class JsonLinesConnector(Connector):
    """Reads a JSON-lines export (or the newest in a folder)."""

    options_model = JsonLinesOptions
    description = "JSON-lines export: a file or a folder of dated exports (newest wins)"

    def current_file(self) -> Path:
        options: JsonLinesOptions = self.options
        return self.newest_export(options.path, options.file_pattern, options.newest_by)

    def records(self) -> Iterator[SourceRecord]:
        options: JsonLinesOptions = self.options
        path = self.current_file()
        with path.open("rb") as stream:
            line_number = 0
            while True:
                raw = stream.readline(options.max_line_bytes + 1)
                if not raw:
                    return
                line_number += 1
                if len(raw) > options.max_line_bytes:
                    raise ConnectorError(self.source_name, f"line {line_number} of {path.name} is longer than "
                                         f"{options.max_line_bytes} bytes", "Ask the vendor to check the export")
                if not raw.endswith(b"\n"):
                    raise ConnectorError(self.source_name, f"{path.name} ends without a newline (line "
                                         f"{line_number}): the upload may be unfinished",
                                         "Wait for the upload to finish, then run again")
                if not raw.strip():
                    continue
                key = f"line {line_number}"
                try:
                    document = json.loads(raw)
                except (ValueError, RecursionError):
                    yield SourceRecord(key, {}, ("line is not valid JSON",))
                    continue
                if not isinstance(document, dict):
                    yield SourceRecord(key, {}, ("line is not a JSON object",))
                    continue
                yield SourceRecord(key, document)

    def check(self) -> CheckResult:
        check = CheckBuilder(self.source_name, "jsonl")
        if not check.options_valid(self):
            return check.result()
        check.passed("settings", "options are valid")
        try:
            path = self.current_file()
            with path.open("rb") as stream:
                first_line = stream.readline(self.options.max_line_bytes + 1)
        except ConnectorError as exc:
            check.failed_from("connection", exc)
            return check.result()
        except OSError as exc:
            check.failed_with("connection", f"cannot read the export: {exc.__class__.__name__}. "
                              "Check file permissions")
            return check.result()
        if not first_line:
            check.failed_with("connection", f"the export {path.name} is empty")
        else:
            check.passed("connection", f"reads {path.name}")
        check.not_applicable("credentials", "a file needs no credentials")
        return check.result()

    @classmethod
    @contextlib.contextmanager
    def sample(cls) -> Iterator[JsonLinesConnector]:
        yield cls({"path": str(SAMPLES)}, source_name="sample-jsonl")
