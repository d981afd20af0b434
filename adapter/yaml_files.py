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
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise YamlFileProblem(f"not valid YAML: {exc}") from None
