"""The connector interface: what every source system plug-in provides.

A connector reads one source system and yields ``SourceRecord`` objects, one at
a time, as the source sends them. It knows nothing of mappings, validation or
the database: those live once, in the sync engine. It declares its options as a
pydantic model, so a typo in the configuration is found before any I/O, and it
offers ``check()`` so an operator can test settings, connection and
credentials in that order and read what is wrong.

Errors raised here are read by a municipal operator. They say what happened,
to which source, and what to do next, and never carry personal data: source
systems echo BSNs, pass numbers and names in their fault texts, so a fault's
own text is not passed on at all (its code is), and ``redact`` removes digit
runs from any other text that came from the source.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, ContextManager

from pydantic import BaseModel, ConfigDict, ValidationError

from adapter import redaction
from adapter.records import SourceRecord

# A BSN has 9 digits (8 once a spreadsheet ate the leading zero); pass numbers
# have 10-19. Any run of 6 or more digits in text from a source may be either.
_LONG_DIGIT_RUN = re.compile(r"\d{6,}")


def redact(text: str) -> str:
    """Remove digit runs that may be a BSN or pass number from source text, and mask numbers written in groups
    (``adapter.redaction.redact``)."""
    return redaction.redact(_LONG_DIGIT_RUN.sub("[number removed]", text))


class ConnectorOptions(BaseModel):
    """Base for every connector's options: unknown keys are configuration errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectorError(Exception):
    """A problem reading a source, worded for the operator who must act on it."""

    def __init__(self, source: str, what_happened: str, what_to_do: str):
        # args are the constructor's arguments, so the error pickles (worker processes).
        super().__init__(source, what_happened, what_to_do)
        self.source = source
        self.what_happened = what_happened
        self.what_to_do = what_to_do

    def __str__(self) -> str:
        return f"source '{self.source}': {self.what_happened}. {self.what_to_do}"


class ConnectorConfigError(ConnectorError):
    """The source's options are invalid; ``problems`` lists every one of them."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listing = "; ".join(problems)
        super().__init__(
            source,
            f"{len(problems)} problem(s) in the options: {listing}",
            "Fix these keys under sources.<name>.options in the configuration file and run "
            "'connectors check' again",
        )
        self.args = (source, problems)


class SourceUnavailable(ConnectorError):
    """The source could not be reached or answered with a server error."""


class SourceAuthError(ConnectorError):
    """The source refused our credentials."""


class SourceFault(ConnectorError):
    """The source answered with an application error (e.g. a SOAP Fault)."""


def describe_validation_error(error: ValidationError) -> list[str]:
    """Each pydantic error as 'key.path: message', for an operator."""
    problems = []
    for detail in error.errors():
        key_path = ".".join(str(part) for part in detail["loc"]) or "(options)"
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown option (check the spelling)"
        problems.append(f"{key_path}: {message}")
    return problems


@dataclass(frozen=True, slots=True)
class CheckStep:
    """One step of a check: ``ok`` is None when the step was not run."""

    name: str
    ok: bool | None
    message: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``Connector.check()`` found, in the order it looked."""

    source: str
    connector: str
    steps: tuple[CheckStep, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(step.ok is not False for step in self.steps) and any(
            step.ok for step in self.steps
        )

    def render(self) -> str:
        labels = {True: "ok  ", False: "FAIL", None: "skip"}
        lines = [f"source '{self.source}' (connector {self.connector}):"]
        lines += [f"  [{labels[step.ok]}] {step.name}: {step.message}" for step in self.steps]
        lines.append("  result: " + ("all checks passed" if self.ok else "NOT ready, see FAIL above"))
        return "\n".join(lines)

    __str__ = render


class CheckBuilder:
    """Collects check steps; after a failure, later steps are recorded as skipped."""

    STEPS = ("settings", "connection", "credentials")

    def __init__(self, source: str, connector: str):
        self._source = source
        self._connector = connector
        self._steps: list[CheckStep] = []

    @property
    def failed(self) -> bool:
        return any(step.ok is False for step in self._steps)

    def passed(self, name: str, message: str) -> None:
        self._steps.append(CheckStep(name, True, message))

    def failed_with(self, name: str, message: str) -> None:
        self._steps.append(CheckStep(name, False, message))

    def not_applicable(self, name: str, message: str) -> None:
        self._steps.append(CheckStep(name, None, message))

    def options_valid(self, connector: Connector) -> bool:
        """Whether ``connector``'s options are valid; when not, the settings step fails listing every problem."""
        if connector.option_problems:
            self.failed_with("settings", "; ".join(connector.option_problems))
            return False
        return True

    def failed_from(self, name: str, error: ConnectorError) -> None:
        """The step failed with a connector's error: what happened, then what to do."""
        self.failed_with(name, f"{error.what_happened}. {error.what_to_do}")

    def result(self) -> CheckResult:
        done = {step.name for step in self._steps}
        skipped = [
            CheckStep(name, None, "not tested because an earlier step failed")
            for name in self.STEPS
            if name not in done
        ]
        return CheckResult(self._source, self._connector, tuple(self._steps + skipped))


class Connector(abc.ABC):
    """Reads one source system. Subclass, set ``options_model``, implement the rest.

    The constructor never raises on bad options: ``check()`` must be able to
    report them. ``records()`` raises ``ConnectorConfigError`` listing every
    problem when the options are invalid.
    """

    #: The pydantic model of this connector's ``options`` block.
    options_model: ClassVar[type[ConnectorOptions]]
    #: One line for ``connectors list``.
    description: ClassVar[str] = ""

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        source_name: str = "(unnamed)",
        base_dir: Path | None = None,
    ):
        self.source_name = source_name
        # Relative file paths in options are read against the configuration's directory.
        self.base_dir = base_dir or Path.cwd()
        self.raw_options = dict(options)
        self._options: ConnectorOptions | None = None
        self.option_problems: list[str] = []
        try:
            self._options = self.options_model.model_validate(self.raw_options)
        except ValidationError as exc:
            self.option_problems = describe_validation_error(exc)

    @property
    def options(self) -> Any:
        """The validated options; raises ConnectorConfigError when they are invalid."""
        if self._options is None:
            raise ConnectorConfigError(self.source_name, self.option_problems)
        return self._options

    def resolve_path(self, path: Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def newest_export(self, path: Path, file_pattern: str, newest_by: str = "name") -> Path:
        """The export to read for a source that drops files: ``path`` itself when it is a file, else the newest
        file in that folder matching ``file_pattern``, by name (dated file names) or by ``"mtime"``. Raises a
        ConnectorError the operator can act on when there is none."""
        path = self.resolve_path(path)
        if path.is_file():
            return path
        if path.is_dir():
            candidates = [item for item in path.glob(file_pattern) if item.is_file()]
            if not candidates:
                raise ConnectorError(self.source_name, f"the folder {path} holds no file matching '{file_pattern}'",
                                     "Check that last night's export arrived, or correct options.file_pattern")
            if newest_by == "mtime":
                return max(candidates, key=lambda item: (item.stat().st_mtime, item.name))
            return max(candidates, key=lambda item: item.name)
        raise ConnectorError(self.source_name, f"the export {path} does not exist",
                             "Check options.path, and that the export job wrote its file")

    @abc.abstractmethod
    def records(self) -> Iterator[SourceRecord]:
        """Yield the source's records one at a time; never load them all."""

    def __iter__(self) -> Iterator[SourceRecord]:
        return self.records()

    @abc.abstractmethod
    def check(self) -> CheckResult:
        """Test settings, then connection, then credentials; never raise."""

    @classmethod
    def sample(cls) -> ContextManager[Connector]:
        """A configured instance reading this connector's bundled sample data.

        The connector contract test uses it, so a connector registered by any
        package is tested the moment it is installed.
        """
        raise NotImplementedError(
            f"{cls.__name__} declares no sample(); add one so the contract test can read it"
        )
