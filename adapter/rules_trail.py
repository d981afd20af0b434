"""The budget rules file in the audit trail: a changed file is recorded when a sync or the scheduler loads it.

Budget rules decide who gets how much money, so a council or an auditor asks
"when did the rules change?". The file lives outside the database, so the
adapter notices the change when it reads the file: the SHA-256 of its bytes is
compared with the fingerprint of the last ``rules.changed`` entry for that file
name, and a different one (or none yet) is appended to the hash-chained trail
with the previous fingerprint. An unchanged file costs one small read query.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from adapter import audit
from adapter.audit import AuditEntry
from adapter.db import Database
from adapter.rules import BudgetRules, load_rules

ACTION = "rules.changed"


def load_rules_recorded(db: Database, path: str | Path | None, actor: str) -> BudgetRules:
    """``load_rules``, and the file's fingerprint in the audit trail when it changed since last recorded."""
    rules = load_rules(path)  # a broken file raises before anything is recorded
    if path is not None:
        record_if_changed(db, Path(path), actor)
    return rules


def record_if_changed(db: Database, path: Path, actor: str) -> bool:
    """Append ``rules.changed`` for ``path`` when its content differs from the last recorded; return whether."""
    fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()
    object_ref = f"rules:{path.name}"
    with db.read() as session:
        if _last_fingerprint(session, object_ref) == fingerprint:
            return False
    with db.write() as session:
        # Asked again inside the write transaction, after taking the trail's writer lock that the append below
        # takes anyway: another process may have recorded it in between, and two that asked at once (the CLI
        # beside the scheduler's roll-over) would each append the same change.
        audit.serialise_writers(session)
        previous = _last_fingerprint(session, object_ref)
        if previous == fingerprint:
            return False
        audit.record(session, actor, ACTION, object_ref, fingerprint=fingerprint, previous=previous)
    return True


def _last_fingerprint(session, object_ref: str) -> str | None:  # type: ignore[no-untyped-def]
    details = session.execute(
        select(AuditEntry.details_json).where(AuditEntry.action == ACTION, AuditEntry.object_ref == object_ref)
        .order_by(AuditEntry.id.desc()).limit(1)
    ).scalar_one_or_none()
    return json.loads(details).get("fingerprint") if details else None
