"""Reading the operator's YAML files (configuration, budget rules, mappings): every way it can fail, in one sentence.

Each loader names its own file kind and error class; what goes wrong while reading is the same for all of them,
so it is worded once here: not there, not UTF-8, not readable (a folder, no permission), not YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileProblem(Exception):
    """Why a YAML file could not be read, as one sentence for the operator (its ``str``)."""


def read_yaml(path: Path, where_to_look: str) -> Any:
    """The parsed content of the UTF-8 YAML file at ``path`` (None for an empty file). ``where_to_look``: the
    setting or option that names the file, for the sentence when it is not there or cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlFileProblem(f"file not found (looked in {path.resolve()}); {where_to_look}") from None
    except UnicodeDecodeError:
        raise YamlFileProblem("not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:  # a folder, no permission to read it, a disk error
        raise YamlFileProblem(f"cannot be read ({exc.strerror or type(exc).__name__}); {where_to_look}, and check "
                              "that this user may read it") from None
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise YamlFileProblem(f"not valid YAML: {exc}") from None


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader``, but a date that does not exist (``ends: 2027-02-29``) is a YAML error with its line,
    as any other mistake in the file: PyYAML raised a bare ``ValueError`` ("day is out of range for month")
    naming neither the file nor the line, and the loaders let it through as a traceback."""

    def construct_yaml_timestamp(self, node):  # type: ignore[no-untyped-def]
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} is not a day of the calendar ({exc}); write a date that exists, as "
                "YYYY-MM-DD", node.start_mark) from None


_SafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _SafeLoader.construct_yaml_timestamp)
