"""The session-wide leak check fails a run that leaks: run it on a small suite that does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

LEAKY_SUITE = textwrap.dedent('''
    import logging
    from flask import Flask, Response

    def test_logs_a_surname():
        # Names cannot be recognised in text, so the filter cannot mask them: the check must catch it.
        logging.getLogger("adapter.sync").info("updated Jansen")

    def test_problem_response_with_a_bsn():
        app = Flask("leaky")

        @app.get("/")
        def leaky():
            return Response('{"detail": "no pass for 999994669"}', 404, mimetype="application/problem+json")

        assert app.test_client().get("/").status_code == 404
''')
CLEAN_SUITE = textwrap.dedent('''
    import logging

    def test_logs_a_masked_bsn():
        logging.getLogger("adapter.sync").warning("rejected 999994669")
''')


def _run(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(source, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.log_capture_plugin", "-o", "addopts=",
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(tmp_path / "test_inner.py")],
        # TMPDIR: the kept log of a failing run lands in this test's own directory.
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})


def test_a_leaking_run_fails_and_names_the_leaks(tmp_path):
    result = _run(tmp_path, LEAKY_SUITE)
    assert "2 passed" in result.stdout  # the tests themselves pass...
    assert result.returncode == 1, result.stdout  # ...but the run fails
    assert "log file: surname 'Jansen'" in result.stdout
    assert "problem response: BSN 999994669" in result.stdout


def test_a_clean_run_passes(tmp_path):
    result = _run(tmp_path, CLEAN_SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
