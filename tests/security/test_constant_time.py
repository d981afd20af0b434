"""Secrets are compared in constant time: ``==`` on a secret leaks, through timing, how much of it matched.

A static check over all our code (so code merged later is checked too): an
``==``/``!=`` with an operand named like a secret fails, unless the other side
is a literal, the comparison is a SQL condition (an argument of ``.where()``/``.filter()``: the
database compares, by index, a hash the caller cannot steer), or the line (or the one above)
says why it is safe with ``# timing-safe: <reason>``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from adapter import merchants

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"(^|_)(api_key|key_hash|token|secret|password|passwd|csrf|signature|hmac)(_|$)", re.I)
MARKER = "# timing-safe:"
SQL_CONDITION_METHODS = {"where", "filter", "having", "join", "outerjoin"}


def _name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def secret_comparisons(source: str) -> list[int]:
    """Line numbers of ``==``/``!=`` comparisons that involve a secret-named operand."""
    lines = source.splitlines()
    tree = ast.parse(source)
    in_sql = {id(argument) for call in ast.walk(tree) if isinstance(call, ast.Call)
              and isinstance(call.func, ast.Attribute) and call.func.attr in SQL_CONDITION_METHODS
              for argument in call.args}
    found = []
    for node in ast.walk(tree):
        if id(node) in in_sql:
            continue
        if not isinstance(node, ast.Compare) or not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(operand, ast.Constant) for operand in operands):
            continue
        if any(SECRET_NAME.search(_name_of(operand) or "") for operand in operands):
            if not any(MARKER in line for line in lines[max(node.lineno - 2, 0):node.lineno]):
                found.append(node.lineno)
    return found


def test_the_check_finds_a_plain_comparison():
    assert secret_comparisons("def ok(given, stored_token):\n    return given == stored_token\n") == [2]
    assert secret_comparisons("x = api_key is None or api_key == ''\n") == []
    assert secret_comparisons("hmac.compare_digest(a_token, b)\n") == []
    assert secret_comparisons("select(Key).where(Key.key_hash == wanted)\n") == []


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO_ROOT).as_posix() for folder in ("adapter", "connectors")
                                        for p in (REPO_ROOT / folder).rglob("*.py")))
def test_no_secret_is_compared_with_equals(path):
    lines = secret_comparisons((REPO_ROOT / path).read_text(encoding="utf-8"))
    assert lines == [], f"{path}: use hmac.compare_digest on line(s) {lines}, or mark why it is safe ({MARKER})"


def test_merchant_key_check_is_constant_time(monkeypatch, sqlite_url):
    """authenticate() ends in hmac.compare_digest, whatever the database answered."""
    from adapter.db import Database
    from tests import factories

    db = Database(sqlite_url)
    issued = factories.merchant(db)
    calls = []
    real = merchants.hmac.compare_digest
    monkeypatch.setattr(merchants.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    with db.read() as session:
        assert merchants.authenticate(session, issued.api_key) is not None
    assert calls == [(merchants.hash_key(issued.api_key), merchants.hash_key(issued.api_key))]
    db.dispose()
