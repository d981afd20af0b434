from __future__ import annotations

from pathlib import Path

import pytest

from adapter.settings import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_checked_in_example_config_is_valid():
    settings = load_settings(REPO_ROOT / "config" / "adapter.yaml")
    assert settings.environment == "development"
    assert settings.data_dir == REPO_ROOT / "var"


def test_every_mistake_is_reported_at_once_with_its_key_path(tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text(
        "api:\n"
        "  max_amount_cents: -5\n"        # 1: out of range
        "sync:\n"
        "  grace_nigths: 3\n"             # 2: misspelt key
        "sources:\n"
        "  gemeente:\n"
        "    connector: soap\n"
        "    mapping: m.yaml\n"
        "    schedule: '25:00'\n",        # 3: not a time
        encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    problems = caught.value.problems
    assert len(problems) == 3
    assert any(p.startswith("api.max_amount_cents:") for p in problems)
    assert any(p.startswith("sync.grace_nigths: unknown key") for p in problems)
    assert any(p.startswith("sources.gemeente.schedule:") for p in problems)
    assert "3 problem(s)" in str(caught.value)


@pytest.mark.parametrize(("written", "says"), [
    ("23:30", 'is the number 1410, not a time: YAML reads an unquoted time from 10:00 as a number (23:30 as 1410). '
              'Write it in quotes, e.g. schedule: "23:30"'),
    ("'4.15'", "'4.15' is not a time of day: write \"HH:MM\" on the 24-hour clock"),
    ("'25:00'", "'25:00' is not a time of day"),
])
def test_a_schedule_that_is_not_a_time_says_how_to_write_one(tmp_path, written, says):
    """YAML reads `schedule: 23:30` unquoted as the number 1410 (base 60) and `04:15` as text: an operator
    moving the sync to the evening was told "Input should be a valid string", or shown a regular expression."""
    config = tmp_path / "adapter.yaml"
    config.write_text(f"sources:\n  gemeente:\n    connector: csv\n    mapping: m.yaml\n    schedule: {written}\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    [problem] = caught.value.problems
    assert problem.startswith("sources.gemeente.schedule: ") and says in problem and "Value error" not in problem
    assert "pattern" not in problem and "valid string" not in problem


def test_a_schedule_in_quotes_or_an_unquoted_early_time_is_taken(tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text("sources:\n  a: {connector: csv, mapping: m.yaml, schedule: 04:15}\n"
                      "  b: {connector: csv, mapping: m.yaml, schedule: '23:30'}\n", encoding="utf-8")
    assert [source.schedule for source in load_settings(config).sources.values()] == ["04:15", "23:30"]


def test_secrets_in_the_file_are_refused(tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text("database:\n  url: postgresql://adapter:hunter2@db/adapter\n"
                      "sources:\n  rest:\n    connector: rest\n    mapping: m.yaml\n"
                      "    options: {api_key: abc}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    problems = "\n".join(caught.value.problems)
    assert "sources.rest.options.api_key: secrets come only from the environment" in problems
    assert "database.url" in problems and "ADAPTER_DATABASE_URL" in problems
    assert "hunter2" not in str(caught.value)


def test_database_url_from_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "adapter.yaml"
    config.write_text("data_dir: var\n", encoding="utf-8")
    assert load_settings(config).database_url == f"sqlite:///{tmp_path / 'var' / 'adapter.db'}"
    monkeypatch.setenv("ADAPTER_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings(config).database_url == "postgresql+psycopg://u@h/db"


def test_missing_file_says_how_to_point_elsewhere(tmp_path):
    with pytest.raises(ConfigError, match="--config PATH or set ADAPTER_CONFIG"):
        load_settings(tmp_path / "nope.yaml")


def test_a_config_file_that_cannot_be_read_is_a_config_error_that_says_so(tmp_path):
    from adapter.settings import ConfigError, load_settings

    latin = tmp_path / "adapter.yaml"
    latin.write_bytes("environment: production  # caf\xe9".encode("cp1252"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(latin)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path)  # a directory


def test_a_bad_environment_from_the_variable_is_named_as_coming_from_it(tmp_path, monkeypatch):
    # The file says development; the unit file or image sets ADAPTER_ENVIRONMENT. An operator told
    # "environment: ..." looks in the file and finds nothing wrong there.
    config = tmp_path / "adapter.yaml"
    config.write_text("environment: development\n", encoding="utf-8")
    monkeypatch.setenv("ADAPTER_ENVIRONMENT", "staging")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert any(problem.startswith("environment (from ADAPTER_ENVIRONMENT='staging'): ")
               for problem in caught.value.problems), caught.value.problems
