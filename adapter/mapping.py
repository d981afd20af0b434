"""Mapping files: where each canonical cardholder field comes from.

A mapping is data (``mappings/<name>.yaml``), written by municipal IT, not
Python. It names, for each field of ``CardholderRecord``, a source (a CSV
column, a path into a SOAP/JSON record, several of either to join, or a fixed
value) and a list of transforms from the closed list in ``adapter.transforms``.
An optional ``records`` path iterates nested items, so one household answer
becomes one canonical record per member-pass.

``load_mapping`` checks the whole file and raises ``MappingError`` listing
every problem with its key path, so one run shows all mistakes. The result is
compiled once; ``CompiledMapping.apply`` is the per-row hot path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from adapter.fused_fields import fused_fields
from adapter.paths import Getter, PathError, RecordsPath, compile_column, compile_field_path
from adapter.records import CardholderRecord, PassStatus, RejectedRecord, SourceRecord, cardholder_builder
from adapter.transforms import TRANSFORMS, Transform, TransformError, Unreadable, text_of
from adapter.yaml_files import YamlFileProblem, read_yaml

MAPPING_VERSION = 1

REQUIRED_FIELDS = ("household_id", "cardholder_id", "pass_number")
TEXT_FIELDS = (
    "household_id", "cardholder_id", "pass_number", "bsn", "first_names", "initials",
    "surname_prefix", "surname", "replaces_pass_number",
)
DATE_FIELDS = ("birth_date", "valid_from", "valid_until")
CANONICAL_FIELDS = TEXT_FIELDS + DATE_FIELDS + ("pass_status", "is_child")
_TOP_LEVEL_KEYS = ("version", "description", "records", "fields")


class MappingError(Exception):
    """A mapping file is invalid; ``problems`` lists every problem with its key path."""

    def __init__(self, origin: str, problems: list[str]):
        self.origin = origin
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{origin}: {len(problems)} problem(s) in the mapping:\n{listing}\n"
            "Fix these keys and run 'mappings validate' again."
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Rebuilt from its own arguments, so it crosses from a reading worker (adapter.read_ahead) intact.
        return type(self), (self.origin, self.problems)


class FieldSpec(BaseModel):
    """One canonical field: exactly one source, then transforms in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    path: str | None = None
    columns: list[str] | None = None
    paths: list[str] | None = None
    value: Any = None
    transforms: list[str | dict[str, Any]] = []

    @model_validator(mode="after")
    def _exactly_one_source(self) -> FieldSpec:
        given = [key for key in ("column", "path", "columns", "paths", "value")
                 if key in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of column, path, columns, paths, value "
                f"(found {', '.join(given) or 'none'})"
            )
        return self


@dataclass(frozen=True, slots=True)
class _CompiledField:
    name: str
    getter: Getter
    steps: tuple[Transform, ...]
    finish: Callable[[Any], Any]
    # Set for a flat column (CSV): read with one dict access instead of a getter call.
    column: str | None = None
    # The first step is 'trim': done inline, it is on nearly every CSV field.
    trims_first: bool = False
    # The flat columns (CSV) this field reads, by name.
    columns_read: tuple[str, ...] = ()

    @property
    def readable_finish(self) -> Callable[[Any], Any]:
        """The finish step, refusing a value the source could not read."""
        return _refusing_unreadable(self.finish)

    @property
    def ready_types(self) -> frozenset[type]:
        """The value types the finish step returns unchanged: values of these types skip its call."""
        return _READY_TYPES[self.finish]


class CompiledMapping:
    """A checked mapping, ready to turn source records into canonical records."""

    def __init__(self, origin: str, records_paths: list[RecordsPath], fields: list[_CompiledField]):
        self.origin = origin
        self.records_paths = records_paths
        # Every field in one function (adapter.fused_fields), the hot path; and each field on its own, for a
        # record with a problem, which is mapped again field by field to collect every reason.
        self._map_fields = fused_fields(fields)
        self._fields = tuple((field.name, _one_field(field)) for field in fields)
        # Every flat column the fields read, in the mapping's order: a source of flat rows must have them all.
        self.columns_read = tuple(dict.fromkeys(column for field in fields for column in field.columns_read))
        self.field_names = tuple(field.name for field in fields)
        self._required = tuple(name for name in REQUIRED_FIELDS if name in self.field_names)
        self._required_at = tuple(self.field_names.index(name) for name in self._required)
        self._status_at = self.field_names.index("pass_status") if "pass_status" in self.field_names else None
        self._build = cardholder_builder(self.field_names)

    def apply(self, record: SourceRecord) -> list[CardholderRecord | RejectedRecord]:
        """One source record -> zero or more canonical or rejected records."""
        if record.problems:
            return [RejectedRecord(record.key, tuple(record.problems))]
        root = record.fields
        if not isinstance(root, dict):
            # A list item that is a string, a number or null: no field can be read from it, and skipping it would
            # lose a cardholder without a word.
            return [RejectedRecord(record.key, ("record: is not an object with fields (a JSON object or an XML "
                                                "element); ask the source system's administrator",))]
        if not self.records_paths:
            return [self._map_item(record.key, (root,))]
        results: list[CardholderRecord | RejectedRecord] = []
        for records_path in self.records_paths:
            for label, levels in records_path.items(root):
                results.append(self._map_item(f"{record.key} {label}", levels))
        return results

    def _map_item(self, source_key: str, levels: tuple[Any, ...]) -> CardholderRecord | RejectedRecord:
        # Fast path: every field maps. Fields are pure, so a record with a problem
        # is mapped again by _reject, which collects every reason.
        try:
            values = self._map_fields(levels)
        except TransformError:
            return self._reject(source_key, levels)
        for position in self._required_at:
            if values[position] is None:
                return self._reject(source_key, levels)
        if self._status_at is not None and values[self._status_at] is None:
            values[self._status_at] = PassStatus.ACTIVE  # the record's default
        return self._build(source_key, values)

    def _reject(self, source_key: str, levels: tuple[Any, ...]) -> RejectedRecord:
        values: dict[str, Any] = {}
        reasons: list[str] = []
        for name, run in self._fields:
            try:
                values[name] = run(levels)
            except TransformError as exc:
                reasons.append(f"{name}: {exc}")
        for name in self._required:
            if values.get(name, "") is None:
                reasons.append(f"{name}: is missing (required)")
        # The pass number when it mapped (a pass number of digits, as validation asks): the sync's guard then
        # counts this line and the absence of its stored pass once (RejectedRecord.pass_number).
        pass_number = values.get("pass_number")
        named = pass_number if isinstance(pass_number, str) and pass_number.isascii() and pass_number.isdigit() \
            else None
        return RejectedRecord(source_key, tuple(reasons), pass_number=named)


def _one_field(field: _CompiledField) -> Callable[[tuple[Any, ...]], Any]:
    """``field``'s value in a record's levels, alone."""
    values = fused_fields([field])
    return lambda levels: values(levels)[0]


# -- the final step per field type: what the canonical record accepts ------------


def _finish_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TransformError("is true/false, expected text")
    return text_of(value)


def _finish_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    raise TransformError("is not a date (add a date transform)")


_STATUS_BY_VALUE = {status.value: status for status in PassStatus}


def _finish_status(value: Any) -> PassStatus | None:
    if value is None or isinstance(value, PassStatus):
        return value
    try:
        return _STATUS_BY_VALUE[value]  # what PassStatus(value) finds, without the enum call
    except (KeyError, TypeError):
        pass
    try:
        return PassStatus(value)
    except ValueError:
        raise TransformError(
            f"is not a pass status ({', '.join(status.value for status in PassStatus)})"
        ) from None


def _finish_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TransformError("is not true/false (map the source values to true and false)")


def _refusing_unreadable(finish: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``finish``, refusing a value the source could not read (``Unreadable``) with its own reason. Only values
    not already of the field's type reach a finish step, so a CSV row's strings never pay for the look."""

    def finish_readable(value: Any) -> Any:
        if value.__class__ is Unreadable:
            raise TransformError(value.reason)
        return finish(value)

    return finish_readable


# The value types each finish step returns unchanged: such values skip the call.
_READY_TYPES: dict[Callable[[Any], Any], frozenset[type]] = {
    _finish_text: frozenset({str, type(None)}),
    _finish_date: frozenset({date, type(None)}),
    _finish_status: frozenset({PassStatus, type(None)}),
    _finish_bool: frozenset({bool, type(None)}),
}


def _finisher(name: str) -> Callable[[Any], Any]:
    if name in DATE_FIELDS:
        return _finish_date
    if name == "pass_status":
        return _finish_status
    if name == "is_child":
        return _finish_bool
    return _finish_text


# -- loading and checking ------------------------------------------------------------


def load_mapping(path: str | os.PathLike[str]) -> CompiledMapping:
    """Read, check and compile a mapping file; raise MappingError listing every problem."""
    mapping_path = Path(path)
    try:
        raw = read_yaml(mapping_path, "check the source's 'mapping' key")
    except YamlFileProblem as problem:
        raise MappingError(str(mapping_path), [str(problem)]) from None
    return compile_mapping(raw, origin=str(mapping_path))


def compile_mapping(raw: Any, origin: str = "(mapping)") -> CompiledMapping:
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise MappingError(origin, ["(top level): must be a mapping with 'version' and 'fields'"])
    for key in raw:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(f"{key}: unknown key (expected one of {', '.join(_TOP_LEVEL_KEYS)})")
    if raw.get("version") != MAPPING_VERSION:
        problems.append(f"version: must be {MAPPING_VERSION}")
    records_paths = _compile_records(raw.get("records"), problems)
    fields = _compile_fields(raw.get("fields"), problems)
    if problems:
        raise MappingError(origin, problems)
    return CompiledMapping(origin, records_paths, fields)


def _compile_records(raw: Any, problems: list[str]) -> list[RecordsPath]:
    if raw is None:
        return []
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        problems.append("records: must be a path such as 'leden[*].passen[*]' or a list of them")
        return []
    compiled = []
    for position, text in enumerate(texts):
        key_path = "records" if isinstance(raw, str) else f"records[{position}]"
        try:
            compiled.append(RecordsPath(text))
        except PathError as exc:
            problems.append(f"{key_path}: {exc}")
    return compiled


def _compile_fields(raw: Any, problems: list[str]) -> list[_CompiledField]:
    if not isinstance(raw, dict) or not raw:
        problems.append("fields: must map canonical field names to their sources")
        return []
    compiled = []
    for name, raw_spec in raw.items():
        key_path = f"fields.{name}"
        if name not in CANONICAL_FIELDS:
            problems.append(f"{key_path}: unknown field (known: {', '.join(CANONICAL_FIELDS)})")
            continue
        try:
            spec = FieldSpec.model_validate(raw_spec)
        except ValidationError as exc:
            for error in exc.errors():
                location = ".".join(str(part) for part in error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = "unknown key (use column, path, columns, paths, value, transforms)"
                problems.append(f"{key_path}{'.' + location if location else ''}: {message}")
            continue
        field = _compile_field(name, spec, key_path, problems)
        if field is not None:
            compiled.append(field)
    for name in REQUIRED_FIELDS:
        if name not in raw:
            problems.append(f"fields.{name}: is required but not mapped")
    return compiled


def _compile_field(name: str, spec: FieldSpec, key_path: str, problems: list[str]) -> _CompiledField | None:
    count_before = len(problems)
    getter = _compile_getter(spec, key_path, problems)
    steps = []
    step_names = []
    for position, raw_transform in enumerate(spec.transforms):
        built = _compile_transform(raw_transform, f"{key_path}.transforms[{position}]", problems)
        if built is not None:
            step_names.append(built[0])
            steps.append(built[1])
    # Judge by the names written, so a broken 'date' step is reported once, not twice.
    transform_names = step_names + [_transform_name(raw) for raw in spec.transforms]
    multiple = spec.columns is not None or spec.paths is not None
    if multiple and "join" not in transform_names:
        problems.append(f"{key_path}.transforms: several sources need a 'join' transform")
    if name in DATE_FIELDS and "date" not in transform_names and "value" not in spec.model_fields_set:
        problems.append(f"{key_path}.transforms: a date field needs a 'date' transform with a format")
    if name == "pass_status":
        _check_constant_outputs(spec, key_path, problems, {status.value for status in PassStatus})
    if name == "is_child":
        _check_constant_outputs(spec, key_path, problems, {True, False})
    if len(problems) > count_before or getter is None:
        return None
    return _CompiledField(name, getter, tuple(steps), _finisher(name), column=spec.column,
                          trims_first=step_names[:1] == ["trim"],
                          columns_read=(spec.column,) if spec.column is not None else tuple(spec.columns or ()))


def _check_constant_outputs(spec: FieldSpec, key_path: str, problems: list[str], allowed: set[Any]) -> None:
    """Map targets and defaults of status/boolean fields are checked at load time."""
    described = ", ".join(sorted(str(value).lower() for value in allowed))
    if "value" in spec.model_fields_set and spec.value not in allowed:
        problems.append(f"{key_path}.value: must be one of {described}")
    for position, transform in enumerate(spec.transforms):
        if not isinstance(transform, dict) or len(transform) != 1:
            continue
        (transform_name, params), = transform.items()
        if transform_name == "map" and isinstance(params, dict):
            for source_value, target in (params.get("values") or {}).items():
                if target not in allowed:
                    problems.append(
                        f"{key_path}.transforms[{position}].map.values.{source_value}: "
                        f"must map to one of {described}"
                    )
            if "default" in params and params["default"] not in allowed:
                problems.append(f"{key_path}.transforms[{position}].map.default: must be one of {described}")
        if transform_name == "default" and params not in allowed:
            problems.append(f"{key_path}.transforms[{position}].default: must be one of {described}")


def _compile_getter(spec: FieldSpec, key_path: str, problems: list[str]) -> Getter | None:
    if spec.column is not None:
        return compile_column(spec.column)
    if spec.columns is not None:
        getters = [compile_column(column) for column in spec.columns]
    elif spec.paths is not None:
        getters = _compile_paths(spec.paths, f"{key_path}.paths", problems)
    elif spec.path is not None:
        compiled = _compile_paths([spec.path], f"{key_path}.path", problems, single=True)
        return compiled[0] if compiled else None
    else:
        constant = spec.value
        return lambda levels: constant
    if not getters:
        problems.append(f"{key_path}: give at least one column or path")
        return None
    return lambda levels: [get(levels) for get in getters]


def _compile_paths(texts: list[str], key_path: str, problems: list[str], single: bool = False) -> list[Getter]:
    getters = []
    for position, text in enumerate(texts):
        try:
            getters.append(compile_field_path(text))
        except PathError as exc:
            problems.append(f"{key_path if single else f'{key_path}[{position}]'}: {exc}")
    return getters


def _transform_name(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and len(raw) == 1:
        return next(iter(raw))
    return None


def _compile_transform(raw: Any, key_path: str, problems: list[str]) -> tuple[str, Transform] | None:
    known = ", ".join(TRANSFORMS)
    if isinstance(raw, str):
        name, params = raw, None
    elif isinstance(raw, dict) and len(raw) == 1:
        (name, params), = raw.items()
    else:
        problems.append(f"{key_path}: write a transform as a name or as '{{name: parameters}}'")
        return None
    spec = TRANSFORMS.get(name)
    if spec is None:
        problems.append(f"{key_path}: unknown transform '{name}' (known: {known})")
        return None
    if spec.params_model is None:
        if params is not None:
            problems.append(f"{key_path}.{name}: takes no parameters")
            return None
        return name, spec.builder(None)
    if params is None:
        params = {}  # a bare name: parameters all take their defaults, or are reported missing
    if not isinstance(params, dict) and spec.shorthand:
        params = {spec.shorthand: params}
    try:
        model = spec.params_model.model_validate(params)
    except ValidationError as exc:
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{key_path}.{name}{'.' + location if location else ''}: {message}")
        return None
    return name, spec.builder(model)
