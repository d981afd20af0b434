"""Paths into nested source records (SOAP answers, JSON documents).

Two kinds, both compiled once per mapping:

* a *records path* such as ``leden[*].passen[*]`` says which nested items
  become one canonical record each; every ``[*]`` is a level;
* a *field path* such as ``pasnummer``, ``^.bsn`` or ``$.huishoudnummer``
  reads a value relative to the current item: each leading ``^`` goes one
  ``[*]`` level up (the member that holds this pass), ``$`` starts at the
  whole source record. ``adres.postcode`` and ``passen[0].pasnummer`` descend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Levels = tuple[Any, ...]  # the source record first, the current item last
Getter = Callable[[Levels], Any]

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]*"
_STEP = re.compile(rf"^({_NAME})(\[(\*|\d+)\])?$")


class PathError(ValueError):
    pass


def _split_steps(text: str) -> list[tuple[str, str | None]]:
    steps = []
    for part in text.split("."):
        match = _STEP.match(part)
        if not match:
            raise PathError(f"'{part}' is not a path step (expected name, name[*] or name[0])")
        steps.append((match.group(1), match.group(3)))
    return steps


def compile_field_path(text: str) -> Getter:
    """A function reading the value at ``text`` from the levels of an item."""
    if not text or not text.strip():
        raise PathError("the path is empty")
    rest = text.strip()
    from_root = False
    levels_up = 0
    if rest.startswith("$"):
        from_root, rest = True, rest[1:].lstrip(".")
    else:
        while rest.startswith("^"):
            levels_up, rest = levels_up + 1, rest[1:]
        rest = rest.lstrip(".")
    steps = _split_steps(rest) if rest else []
    for name, index in steps:
        if index == "*":
            raise PathError(f"'{name}[*]' selects many values; use the records path to iterate")
    keys: tuple[Any, ...] = tuple(
        item for name, index in steps for item in ((name,) if index is None else (name, int(index)))
    )
    if len(keys) == 1 and isinstance(keys[0], str):
        return _single_key_getter(keys[0], from_root, levels_up)

    def get(levels: Levels) -> Any:
        if from_root:
            node = levels[0]
        elif levels_up:
            if levels_up >= len(levels):
                return None
            node = levels[-1 - levels_up]
        else:
            node = levels[-1]
        for key in keys:
            if node is None:
                return None
            if isinstance(key, int):
                node = node[key] if isinstance(node, list) and key < len(node) else None
            else:
                node = node.get(key) if isinstance(node, dict) else None
        return node

    return get


def _single_key_getter(key: str, from_root: bool, levels_up: int) -> Getter:
    """``name``, ``^.name`` or ``$.name``: nearly every field of a SOAP or JSON mapping.

    The same answers as the general getter, without its loop: it runs once per
    field per nested item of a nightly sync.
    """
    if from_root:

        def get_from_root(levels: Levels) -> Any:
            node = levels[0]
            return node.get(key) if isinstance(node, dict) else None

        return get_from_root
    if levels_up:
        position = -1 - levels_up

        def get_from_parent(levels: Levels) -> Any:
            if levels_up >= len(levels):
                return None
            node = levels[position]
            return node.get(key) if isinstance(node, dict) else None

        return get_from_parent

    def get_from_item(levels: Levels) -> Any:
        node = levels[-1]
        return node.get(key) if isinstance(node, dict) else None

    return get_from_item


def compile_column(name: str) -> Getter:
    """A flat column lookup (CSV): the fastest getter, one dict access."""

    def get(levels: Levels) -> Any:
        return levels[-1].get(name)

    return get


class RecordsPath:
    """Which nested items of a source record become canonical records."""

    def __init__(self, text: str):
        self.text = text
        self._steps = _split_steps(text.strip())
        for name, index in self._steps:
            if index is not None and index != "*":
                raise PathError(f"'{name}[{index}]': a records path iterates with [*] only")
        self.depth = sum(1 for _, index in self._steps if index == "*")
        if self.depth == 0:
            raise PathError("a records path needs at least one [*] to iterate over")

    def items(self, root: Any) -> Iterator[tuple[str, Levels]]:
        """Yield (label, levels) for each item: label such as 'leden[1].passen[0]'."""
        yield from self._walk(root, 0, (root,), "")

    def _walk(self, node: Any, step_at: int, levels: Levels, label: str) -> Iterator[tuple[str, Levels]]:
        if step_at == len(self._steps):
            yield label, levels
            return
        name, index = self._steps[step_at]
        child = node.get(name) if isinstance(node, dict) else None
        if index is None:
            yield from self._walk(child, step_at + 1, levels, _join(label, name))
            return
        for position, item in enumerate(_as_list(child)):
            yield from self._walk(item, step_at + 1, levels + (item,), _join(label, f"{name}[{position}]"))


def _as_list(value: Any) -> Sequence[Any]:
    # JSON sends null for "none", zeep a single dict when maxOccurs=1 was used.
    if value is None:
        return ()
    if isinstance(value, list):
        return value
    return (value,)


def _join(label: str, step: str) -> str:
    return f"{label}.{step}" if label else step
