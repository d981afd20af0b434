"""The production logging set-up, and proof that the session-wide leak check can fail."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from click.testing import CliRunner
from gunicorn.config import Config as GunicornConfig

from adapter.api import create_app
from adapter.api.server import RedactingGunicornLogger
from adapter.cli import cli
from adapter.logs import configure_logging, prepare_handler, use_json
from tests.conftest import make_settings
from tests.fixture_personal_data import TEST_BSNS, find_personal_data

BSN = TEST_BSNS[1]
PASS_NUMBER = "6400000000000029"


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level, hooks = list(root.handlers), root.level, (sys.excepthook,)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hooks[0]


def test_scanner_finds_what_an_unfiltered_handler_wrote(tmp_path):
    path = tmp_path / "unfiltered.log"
    plain = logging.FileHandler(path, encoding="utf-8")  # no redaction: what a careless set-up would do
    logger = logging.getLogger("tests.unfiltered")
    logger.propagate = False
    logger.addHandler(plain)
    try:
        logger.warning("holder %s with pass %s, surname %s", BSN, PASS_NUMBER, "Jansen")
    finally:
        logger.removeHandler(plain)
        plain.close()
    assert find_personal_data(path.read_text(encoding="utf-8")) == [
        f"BSN {BSN}", "surname 'Jansen'", f"pass number {PASS_NUMBER}"]


def test_the_same_line_through_our_handler_leaks_nothing(tmp_path):
    path = tmp_path / "filtered.log"
    handler = prepare_handler(logging.FileHandler(path, encoding="utf-8"), json_lines=True)
    logger = logging.getLogger("tests.filtered")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("holder %s with pass %s", BSN, PASS_NUMBER)
        try:
            raise KeyError(f"no row for {BSN}")
        except KeyError:
            logger.exception("look-up failed for pass %s", PASS_NUMBER)
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = path.read_text(encoding="utf-8")
    assert find_personal_data(text) == []
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["message"] == "holder ********* with pass ************0029"
    assert "KeyError: 'no row for *********'" in lines[1]["exception"]


def test_auto_format_is_json_in_production_or_off_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_json("auto", production=False, stream=Tty()) is False
    assert use_json("auto", production=True, stream=Tty()) is True
    assert use_json("auto", production=False, stream=io.StringIO()) is True
    assert use_json("text", production=True) is False and use_json("json", production=False) is True


def test_configure_logging_installs_one_redacting_root_handler(tmp_path, sqlite_url, capsys, restore_root_logging):
    settings = make_settings(tmp_path, sqlite_url, logging={"level": "DEBUG", "format": "json"})
    configure_logging(settings)
    configure_logging(settings)  # again: replaces, never doubles
    logging.getLogger("adapter.sync").info("row for %s skipped", BSN)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "row for ********* skipped"
    assert logging.getLogger().level == logging.DEBUG


def test_uncaught_exception_goes_through_the_filter(tmp_path, sqlite_url, capsys, restore_root_logging):
    configure_logging(make_settings(tmp_path, sqlite_url, logging={"format": "text"}))
    try:
        raise RuntimeError(f"crash while handling {BSN}")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    err = capsys.readouterr().err
    assert "uncaught exception" in err and "RuntimeError: crash while handling *********" in err
    assert BSN not in err


def test_gunicorn_logs_are_redacted(tmp_path):
    config = GunicornConfig()
    config.set("errorlog", str(tmp_path / "gunicorn.log"))
    logger = RedactingGunicornLogger(config)
    logger.error("worker failed on pass %s", PASS_NUMBER)
    for handler in logger.error_log.handlers:
        handler.flush()
    text = (tmp_path / "gunicorn.log").read_text(encoding="utf-8")
    assert "************0029" in text and PASS_NUMBER not in text


def test_unhandled_error_tells_the_client_nothing_and_logs_masked(tmp_path, sqlite_url):
    app = create_app(settings=make_settings(tmp_path, sqlite_url))
    log = io.StringIO()
    handler = prepare_handler(logging.StreamHandler(log), json_lines=True)
    app.logger.addHandler(handler)

    @app.get("/v1/boom")
    def boom():  # type: ignore[no-untyped-def]
        raise ValueError(f"cardholder {BSN} pass {PASS_NUMBER}")

    try:
        response = app.test_client().get("/v1/boom")
    finally:
        app.logger.removeHandler(handler)
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    assert find_personal_data(body) == [] and "ValueError" not in body and "cardholder" not in body
    logged = json.loads(log.getvalue().splitlines()[0])
    assert "ValueError: cardholder ********* pass ************0029" in logged["exception"]


def test_service_refuses_to_start_without_keys_in_production(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.delenv("ADAPTER_ENCRYPTION_KEYS")
    monkeypatch.delenv("ADAPTER_BLIND_INDEX_KEY")
    settings = make_settings(tmp_path, sqlite_url, environment="production")
    with pytest.raises(Exception, match="ADAPTER_ENCRYPTION_KEYS and ADAPTER_BLIND_INDEX_KEY must be set"):
        create_app(settings=settings)

    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"environment": "production", "data_dir": str(tmp_path / "var"),
                                  "database": {"url": sqlite_url}}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--port", "1"])
    assert result.exit_code == 1
    assert "must be set outside development mode" in result.output and "keys generate" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "var" / "dev-keys.json").exists()


def test_development_mode_makes_dev_keys_instead_and_says_so(tmp_path, sqlite_url, monkeypatch, caplog):
    monkeypatch.delenv("ADAPTER_ENCRYPTION_KEYS")
    monkeypatch.delenv("ADAPTER_BLIND_INDEX_KEY")
    with caplog.at_level(logging.WARNING, logger="adapter.crypto"):
        create_app(settings=make_settings(tmp_path, sqlite_url))
    assert (tmp_path / "var" / "dev-keys.json").stat().st_mode & 0o077 == 0
    assert any("demo keys kept in" in record.getMessage() and record.levelno == logging.WARNING
               for record in caplog.records)


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("only", ["ADAPTER_ENCRYPTION_KEYS", "ADAPTER_BLIND_INDEX_KEY"])
def test_one_key_without_its_partner_is_refused_in_every_environment(tmp_path, sqlite_url, monkeypatch, environment,
                                                                       only):
    """Not dev keys in its place: the operator's key would be ignored and the data encrypted under keys nobody
    stored."""
    other = {"ADAPTER_ENCRYPTION_KEYS": "ADAPTER_BLIND_INDEX_KEY",
             "ADAPTER_BLIND_INDEX_KEY": "ADAPTER_ENCRYPTION_KEYS"}[only]
    monkeypatch.delenv(other)
    with pytest.raises(Exception, match=f"{only} is set but {other} is not"):
        create_app(settings=make_settings(tmp_path, sqlite_url, environment=environment))
    assert not (tmp_path / "var" / "dev-keys.json").exists()


@pytest.mark.parametrize("mangled", [
    "q9B2PXkHq1hXU2d0w3V0nlYk7Y1fI8JbK1ZrH8n",  # cut off in a copy
    "q9B2PXkHq1hXU2d0w3V0nlYk7Y1fI8JbK1ZrH8nS1Yé=",  # a character no base64 has
])
def test_a_malformed_encryption_key_is_named_by_its_place_not_a_traceback(tmp_path, sqlite_url, monkeypatch, mangled):
    """Every command and the service build their keys first: a key pasted wrong must say which one and what to
    do, and never echo the key."""
    from tests.conftest import TEST_ENCRYPTION_KEY

    monkeypatch.setenv("ADAPTER_ENCRYPTION_KEYS", f"{TEST_ENCRYPTION_KEY},{mangled}")
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"environment": "production", "data_dir": str(tmp_path / "var"),
                                  "database": {"url": sqlite_url}}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "keys", "check"])
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
    assert "key 2 in ADAPTER_ENCRYPTION_KEYS is not an encryption key" in result.output
    assert "keys generate" in result.output and "Traceback" not in result.output
    assert mangled[:20] not in result.output and TEST_ENCRYPTION_KEY[:20] not in result.output
    with pytest.raises(Exception, match="key 2 in ADAPTER_ENCRYPTION_KEYS is not an encryption key"):
        create_app(settings=make_settings(tmp_path, sqlite_url, environment="production"))


@pytest.mark.parametrize(("content", "said"), [
    ('{"encryption_keys": ', "is not the JSON this adapter writes there"),  # cut off
    ("{}", "does not hold the keys this adapter writes there"),
    ('{"encryption_keys": ["not-a-key"], "blind_index_key": "x"}', "does not hold the keys"),
    (None, "cannot be read (Permission denied): check its owner and permissions"),
])
def test_a_broken_dev_keys_file_is_refused_with_what_to_do_not_a_traceback(tmp_path, sqlite_url, monkeypatch,
                                                                          content, said):
    """Not replaced either: the demo data beside it is encrypted with the keys it held."""
    monkeypatch.delenv("ADAPTER_ENCRYPTION_KEYS")
    monkeypatch.delenv("ADAPTER_BLIND_INDEX_KEY")
    keys_file = tmp_path / "var" / "dev-keys.json"
    keys_file.parent.mkdir()
    written = content or '{"encryption_keys": ["secret"]}'
    keys_file.write_text(written, encoding="utf-8")
    if content is None:  # the tests may run as root, whom no file mode stops
        real_read_text = type(keys_file).read_text

        def unreadable(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if path.name == "dev-keys.json":
                raise PermissionError(13, "Permission denied", str(path))
            return real_read_text(path, *args, **kwargs)

        monkeypatch.setattr(type(keys_file), "read_text", unreadable)
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"environment": "development", "data_dir": str(tmp_path / "var"),
                                  "database": {"url": sqlite_url}}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "keys", "check"])
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
    assert f"the development keys file {keys_file} {said}" in result.output
    assert "put the file back" in result.output and "Traceback" not in result.output
    assert "not-a-key" not in result.output and "secret" not in result.output
    assert keys_file.read_bytes() == written.encode()  # left as it was, not replaced by new keys
