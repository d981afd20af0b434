from __future__ import annotations

import json
import re

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
    # Plug-ins a municipality installed are listed too: the built-ins are among the known, in order.
    assert re.search(r"sources\.ftp\.connector: unknown connector 'ftp'; known connectors: (\S+, )*csv, "
                     r"(\S+, )*rest, (\S+, )*soap\b", output), output
    assert "sources.export.options.colour: unknown option" in output
    assert "sources.export.mapping (broken.yaml):" in output and "shout" in output
    assert "sources.good" not in output


def test_the_example_configuration_checks_clean():
    result = CliRunner().invoke(cli, ["--config", str(REPO / "config" / "adapter.yaml"), "config", "check"])
    assert result.exit_code == 0, result.output


def test_a_schedule_the_scheduler_would_refuse_is_a_problem_here_too(tmp_path):
    # `config check` is the step before the first night: a time in the DST hour must not pass here and then
    # stop the scheduler.
    config = tmp_path / "adapter.yaml"
    demo = {"connector": "csv", "mapping": str(REPO / "mappings" / "demo-csv.yaml"),
            "options": {"path": str(REPO / "connectors" / "samples" / "csv" / "exports")}}
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "sources": {
        "night": {**demo, "schedule": "02:30"}, "midnight": {**demo, "schedule": "00:15"},
        "off": {**demo, "schedule": "02:30", "enabled": False}, "fine": {**demo, "schedule": "03:30"}}}))
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1
    assert "sources.night.schedule: 02:30 lies between 02:00 and 03:00" in result.output
    assert "sources.midnight.schedule: 00:15 lies between 00:00 and 00:59" in result.output
    assert "sources.off" not in result.output and "sources.fine" not in result.output


def test_a_broken_budget_rules_file_is_a_problem_here_too(tmp_path):
    """The scheduler reads the rules before every sync and roll-over, and a broken file stops them all: `config
    check` said "configuration ok" for it, and the officer learnt of the typo from a night without a sync."""
    rules = tmp_path / "budgets.yaml"
    rules.write_text("rules:\n"
                     "  - {code: school, name: School, amount_cents: 12500, period: school_year, colour: red}\n"
                     "  - {code: sport, name: Sport, amount_cents: 30000, period: weekly}\n", encoding="utf-8")
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "budgets": str(rules), "sources": {}}))
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1, result.output
    assert "budgets (budgets.yaml): rules.0.colour: unknown key" in result.output
    assert "budgets (budgets.yaml): rules.1.period:" in result.output
    assert "2 problem(s) in the sources and budget rules" in result.output

    rules.write_text("rules:\n  - {code: school, name: School, amount_cents: 12500, period: school_year}\n",
                     encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 0, result.output
