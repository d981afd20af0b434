"""A mapping's fields as one function: the per-row hot path of every sync.

Mapping a row called one function per field (``_CompiledField.chain``), eleven on
the demo export, from a list comprehension: on a first sync of 200,000 rows those
calls were a third of the mapping's time in the reading worker. Here the same
steps are written out as the body of one function, compiled once per mapping, which
returns the list of the fields' values in the mapping's order.

Only names this module makes up (``v0``, ``column0``, ``step0_1``, ...) appear in
the compiled text. Every value that comes from a mapping file (a column name, a
transform with its parameters) is bound in the function's namespace and never
written into the code, so no mapping file can put code in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from adapter.transforms import TransformError, Unreadable


class FieldParts(Protocol):
    """What a compiled field gives: where its value comes from and the steps it goes through."""

    getter: Callable[[tuple[Any, ...]], Any]
    column: str | None
    trims_first: bool
    steps: tuple[Callable[[Any], Any], ...]

    @property
    def readable_finish(self) -> Callable[[Any], Any]: ...

    @property
    def ready_types(self) -> frozenset[type]: ...


def fused_fields(fields: Sequence[FieldParts]) -> Callable[[tuple[Any, ...]], list[Any]]:
    """One function mapping a record's ``levels`` to the list of every field's value, as calling each field's
    own chain would: a flat column is read with ``dict.get`` from the innermost level, other sources through
    their getter; a leading trim is done inline; a value the source could not read (``Unreadable``) is refused
    before any transform; the finish step is called only for values not already of one of its ready types. A
    value a step or the finish refuses raises ``TransformError``."""
    namespace: dict[str, Any] = {"TransformError": TransformError, "Unreadable": Unreadable}
    lines = ["def map_fields(levels):"]
    if any(field.column is not None for field in fields):
        lines.append("    row = levels[-1]")
    for i, field in enumerate(fields):
        value = f"v{i}"
        if field.column is not None:
            namespace[f"column{i}"] = field.column
            lines.append(f"    {value} = row.get(column{i})")
        else:
            namespace[f"getter{i}"] = field.getter
            lines.append(f"    {value} = getter{i}(levels)")
        steps = field.steps[1:] if field.trims_first else field.steps
        if steps or field.column is None:
            # Before a transform words it as a rule of its own (a date "not in format ..."), which would hide
            # that the source sent something it could not read.
            lines.append(f"    if {value}.__class__ is Unreadable: raise TransformError({value}.reason)")
        if field.trims_first:
            lines.append(f"    if isinstance({value}, str): {value} = {value}.strip() or None")
        for j, step in enumerate(steps):
            namespace[f"step{i}_{j}"] = step
            lines.append(f"    {value} = step{i}_{j}({value})")
        namespace[f"finish{i}"], namespace[f"ready{i}"] = field.readable_finish, field.ready_types
        lines.append(f"    if {value}.__class__ not in ready{i}: {value} = finish{i}({value})")
    lines.append(f"    return [{', '.join(f'v{i}' for i in range(len(fields)))}]")
    exec(compile("\n".join(lines), "<mapping fields>", "exec"), namespace)  # noqa: S102 - see the module's doc
    return namespace["map_fields"]
