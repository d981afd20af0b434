"""Shared fixtures. ``adapter.settings`` belongs to the foundation branch; these
tests use a stand-in with the same fields (connector, mapping, options,
enabled, schedule) so the connectors branch is tested on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).parents[1]


@dataclass(frozen=True)
class StandInSourceSettings:
    connector: str
    mapping: Path
    options: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    schedule: str | None = None


@dataclass(frozen=True)
class StandInSettings:
    sources: dict[str, StandInSourceSettings]


@pytest.fixture
def demo_csv_source() -> StandInSourceSettings:
    return StandInSourceSettings(
        connector="csv",
        mapping=REPO / "mappings" / "demo-csv.yaml",
        options={"path": str(REPO / "connectors" / "samples" / "csv" / "exports")},
        schedule="04:15",
    )
