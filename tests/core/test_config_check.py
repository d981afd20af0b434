from __future__ import annotations

import json

from click.testing import CliRunner

from adapter.cli import cli
from tests.conftest import REPO


def test_every_source_problem_is_reported_in_one_run(tmp_path):
    broken_mapping = tmp_path / "broken.yaml"
    broken_mapping.write_text("version: 1\nfields:\n  pass_number: {column: Pas, transforms: [shout]}\n")
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "sources": {
        "ftp": {"connector": "ftp", "mapping": str(REPO / "mappings" / "demo-csv.yaml")},
        "export": {"connector": "csv", "mapping": str(broken_mapping), "options": {"delimiter": ";;", "colour": 1}},
        "good": {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"),
                 "options": {"path": str(REPO / "connectors" / "samples" / "csv" / "exports")}},
    }}))
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1
    output = result.output
    assert "sources.ftp.connector: unknown connector 'ftp'; known connectors: csv, rest, soap" in output
    assert "sources.export.options.colour: unknown option" in output
    assert "sources.export.mapping (broken.yaml):" in output and "shout" in output
    assert "sources.good" not in output


def test_the_example_configuration_checks_clean():
    result = CliRunner().invoke(cli, ["--config", str(REPO / "config" / "adapter.yaml"), "config", "check"])
    assert result.exit_code == 0, result.output
