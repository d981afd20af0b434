import sys
import types
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

from adapter.connector import Connector, ConnectorOptions
from adapter.cli.connectors import connectors_group, mappings_group, sources_group
from adapter.redaction import mask_pass_number
from adapter.registry import ENTRY_POINT_GROUP, ConnectorRegistry
from tests.conftest import REPO, SettingsWithSources, make_source


@pytest.fixture
def obj(demo_csv_source, tmp_path):
    registry = ConnectorRegistry().load_entry_points()
    broken = make_source("csv", REPO / "mappings" / "demo-csv.yaml", {"path": "missing.csv"})
    return {"settings": SettingsWithSources({"demo": demo_csv_source, "broken": broken}),
            "base_dir": tmp_path, "registry": registry}


def invoke(group, args, obj):
    return CliRunner().invoke(group, args, obj=obj, catch_exceptions=False)


def test_connectors_list_names_the_built_ins(obj):
    result = invoke(connectors_group, ["list"], obj)
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines()]
    # A municipality's own plug-ins may be installed beside them: the suite must still pass there.
    assert listed == sorted(listed) and {"csv", "rest", "soap"} <= set(listed)


def test_connectors_list_names_a_broken_plugin_beside_the_others_and_fails(obj):
    """One broken plug-in ended the whole listing in a traceback: the operator saw neither it named nor what
    else was installed."""
    registry = ConnectorRegistry().discover_entry_points([
        EntryPoint(name="acme", value="no_such_package.module:AcmeConnector", group=ENTRY_POINT_GROUP),
        EntryPoint(name="csv", value="connectors.csv_file:CsvConnector", group=ENTRY_POINT_GROUP),
    ])
    result = invoke(connectors_group, ["list"], {**obj, "registry": registry})
    assert result.exit_code == 1
    acme, csv = result.output.splitlines()
    assert acme.startswith("acme") and "BROKEN: connector 'acme' (no_such_package.module:AcmeConnector) could " \
        "not be loaded" in acme
    assert csv.startswith("csv") and "[connectors.csv_file]" in csv


def test_connectors_check_passes_for_the_demo_and_fails_readably(obj):
    good = invoke(connectors_group, ["check", "demo"], obj)
    assert good.exit_code == 0, good.output
    assert "all checks passed" in good.output
    bad = invoke(connectors_group, ["check", "broken"], obj)
    assert bad.exit_code == 1
    assert "[FAIL] connection" in bad.output and "missing.csv does not exist" in bad.output


def test_unknown_source_lists_the_configured_ones(obj):
    result = invoke(connectors_group, ["check", "nope"], obj)
    assert result.exit_code == 1
    assert "configured sources: broken, demo" in result.output


def test_mappings_validate_a_file_and_all_configured(obj, tmp_path):
    assert invoke(mappings_group, ["validate", str(REPO / "mappings" / "demo-soap.yaml")], obj).exit_code == 0
    every = invoke(mappings_group, ["validate"], obj)
    assert every.exit_code == 0 and "demo-csv.yaml (12 fields)" in every.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nfields:\n  pass_number: {column: P, transforms: [shout]}\n", encoding="utf-8")
    result = CliRunner().invoke(mappings_group, ["validate", str(broken)], obj=obj)
    assert result.exit_code == 1
    assert "fields.pass_number.transforms[0]: unknown transform 'shout'" in result.output
    assert "fields.household_id: is required" in result.output


def test_sources_preview_masks_bsn_and_pass_numbers(obj):
    result = invoke(sources_group, ["preview", "demo", "--limit", "4"], obj)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("-- 4 record(s) shown")
    assert "pass=************0001" in lines[0] and "bsn=*********" in lines[0]
    assert 'name="Zoë de Vries"' in lines[1]
    for bsn in ("999993653", "999993847", "999992077", "000009921", "6064366011000001"):
        assert bsn not in result.output


def test_preview_of_a_broken_source_is_an_error_not_a_traceback(obj):
    result = CliRunner().invoke(sources_group, ["preview", "broken"], obj=obj)
    assert result.exit_code == 1
    assert "source 'broken'" in result.output and "does not exist" in result.output


def test_standalone_commands_load_settings_with_the_foundation_loader(monkeypatch, demo_csv_source, tmp_path):
    calls = []
    stand_in = types.ModuleType("adapter.settings")

    def load_settings(path):
        calls.append(path)
        return SettingsWithSources({"demo": demo_csv_source})

    stand_in.load_settings = load_settings
    monkeypatch.setitem(sys.modules, "adapter.settings", stand_in)
    config = tmp_path / "adapter.yaml"
    result = CliRunner().invoke(sources_group, ["preview", "demo", "--limit", "1", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert calls == [config]


def test_mask_pass_number():
    assert mask_pass_number("6064366011000001") == "************0001"
    assert mask_pass_number("4821") == "***1"  # a short test card is never shown whole


def test_connectors_check_reads_relative_options_against_the_configuration_file(tmp_path, monkeypatch):
    # As the README has it: `stadspas-adapter connectors check demo` after `config check` and before
    # `sources preview`, all three reading options.path against the configuration file's directory.
    config_dir = tmp_path / "config"
    (config_dir / "exports").mkdir(parents=True)
    (config_dir / "exports" / "stadspas.csv").write_bytes(
        (REPO / "connectors" / "samples" / "csv" / "exports" / "stadspas-2026-11-28.csv").read_bytes())
    config = config_dir / "adapter.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'var'}\n"
        "sources:\n"
        "  demo:\n"
        "    connector: csv\n"
        f"    mapping: {REPO / 'mappings' / 'demo-csv.yaml'}\n"
        "    options: {path: exports/stadspas.csv, delimiter: ';'}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # anywhere but the configuration's folder
    from adapter.cli import cli

    result = CliRunner().invoke(cli, ["--config", str(config), "connectors", "check", "demo"])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output


class _CheckRaises(Connector):
    """A plug-in whose check() raises, with a made-up person in the message, instead of reporting a step."""

    options_model = ConnectorOptions
    description = "its check raises"

    def records(self):
        yield from ()

    def check(self):
        raise RuntimeError("host refused the look-up of Sanne de Vries")


def test_a_check_that_raises_is_reported_as_a_failed_step_without_its_message(obj):
    obj["registry"].register("check-raises", _CheckRaises)
    obj["settings"].sources["odd"] = make_source("check-raises", REPO / "mappings" / "demo-csv.yaml")
    result = CliRunner().invoke(connectors_group, ["check", "odd"], obj=obj)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "[FAIL] settings: the connector's check stopped with RuntimeError at test_cli_connectors.py:" \
        in result.output
    assert "Sanne" not in result.output and "NOT ready" in result.output
