"""Whole-session check: no fixture BSN, surname or full pass number in any log line or problem response.

For the whole test run a DEBUG file handler, built the way production builds
its handlers (``adapter.logs.prepare_handler``: redaction filter and JSON
formatter), hangs on the root logger, and SQLAlchemy logs every statement with
its parameters. Every ``application/problem+json`` body a Flask app sends is
kept too. At the end both are scanned; a find fails the run, naming what leaked.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pytest

from adapter.logs import prepare_handler
from tests.fixture_personal_data import find_personal_data

# Loggers whose records we want at their most talkative. SQLAlchemy at INFO logs
# statements and bound parameters (ciphertext, blind indexes: fine; plaintext: a leak).
_LEVELS = {"adapter": logging.DEBUG, "werkzeug": logging.DEBUG, "gunicorn": logging.DEBUG,
           "sqlalchemy.engine": logging.INFO}
# Handled here directly: gunicorn's loggers do not propagate once gunicorn configured them,
# and SQL is kept out of the root logger so a failing test's captured log stays readable.
_NON_PROPAGATING = ("gunicorn.error", "gunicorn.access", "sqlalchemy.engine")


class SessionLogCheck:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="adapter-session-log-"))
        self.log_path = self.directory / "session.log"
        self.handler = prepare_handler(logging.FileHandler(self.log_path, encoding="utf-8"), json_lines=True)
        self.handler.setLevel(logging.DEBUG)
        self.problem_bodies: list[str] = []
        self._previous_levels: dict[str, int] = {}

    def start(self) -> None:
        logging.getLogger().addHandler(self.handler)
        for name in _NON_PROPAGATING:
            logging.getLogger(name).addHandler(self.handler)
        logging.getLogger("sqlalchemy.engine").propagate = False
        for name, level in _LEVELS.items():
            self._previous_levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(level)
        try:
            from flask import request_finished
        except ImportError:  # pragma: no cover - flask is a dependency
            return
        request_finished.connect(self._keep_problem_body, weak=False)

    def _keep_problem_body(self, _sender, response, **_extra) -> None:  # type: ignore[no-untyped-def]
        if response.mimetype == "application/problem+json" and not response.is_streamed:
            self.problem_bodies.append(response.get_data(as_text=True))

    def stop(self) -> list[str]:
        """Detach and scan; returns what was found, described."""
        for name in ("", *_NON_PROPAGATING):
            logging.getLogger(name).removeHandler(self.handler)
        for name, level in self._previous_levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("sqlalchemy.engine").propagate = True
        self.handler.close()
        findings = [f"log file: {what}" for what in find_personal_data(self.log_path.read_text(encoding="utf-8"))]
        findings += [f"problem response: {what}" for what in find_personal_data("\n".join(self.problem_bodies))]
        return findings


_check = SessionLogCheck()


def pytest_sessionstart(session: pytest.Session) -> None:
    _check.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    findings = _check.stop()
    if not findings:
        shutil.rmtree(_check.directory, ignore_errors=True)
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["personal data leaked during the test run (see tests/log_capture_plugin.py):",
             *(f"  {finding}" for finding in findings), f"  log kept at {_check.log_path}"]
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:  # pragma: no cover
            print(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
