"""`stadspas-adapter merchants ...`: keys shown once and stored hashed, rotation grace, disable, audit trail."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from adapter import audit, merchants
from adapter.cli import cli
from adapter.db import Database
from adapter.models import Merchant, MerchantKey, utcnow


def _run(config, *args):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(config), "merchants", *args])


def test_add_list_rotate_disable_with_audit(tmp_path, sqlite_url):
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url},
                                  "api": {"key_rotation_grace_hours": 24}}), encoding="utf-8")
    db = Database(sqlite_url)

    added = _run(config, "add", "Kinderkleding Zuid", "--categories", "clothing,school",
                 "--iban", "NL91 ABNA 0417 1643 00")
    assert added.exit_code == 0, added.output
    first_key = re.search(r"(spk_\S+)", added.output).group(1)
    with db.read() as session:
        merchant = session.execute(select(Merchant)).scalar_one()
        stored_hashes = list(session.execute(select(MerchantKey.key_hash)).scalars())
        assert (merchant.categories, merchant.iban) == ("clothing,school", "NL91ABNA0417164300")
        assert first_key not in stored_hashes and merchants.hash_key(first_key) in stored_hashes

    listed = _run(config, "list")
    assert "Kinderkleding Zuid" in listed.output and first_key not in listed.output

    rotated = _run(config, "rotate-key", str(merchant.id))
    assert rotated.exit_code == 0 and "24 hour" in rotated.output
    second_key = re.search(r"(spk_\S+)", rotated.output).group(1)
    with db.read() as session:
        assert merchants.authenticate(session, first_key) is not None  # grace period
        assert merchants.authenticate(session, second_key) is not None
    in_grace = _run(config, "list").output
    until = r"until \d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert re.search(rf"{first_key[:10]}… {until},{second_key[:10]}…\n", in_grace), in_grace
    with db.write() as session:  # the grace is over
        session.execute(update(MerchantKey).where(MerchantKey.key_hash == merchants.hash_key(first_key))
                        .values(expires_at=utcnow() - timedelta(minutes=1)))
    after_grace = _run(config, "list").output
    assert first_key[:10] not in after_grace and f"keys:{second_key[:10]}…\n" in after_grace

    disabled = _run(config, "disable", str(merchant.id))
    assert disabled.exit_code == 0
    with db.read() as session:
        assert merchants.authenticate(session, second_key) is None
        actions = [entry.action for entry in session.execute(select(audit.AuditEntry)
                                                             .order_by(audit.AuditEntry.id)).scalars()]
        assert actions == ["merchant.created", "merchant.key_rotated", "merchant.disabled"]
        assert audit.verify(session) == []
        assert first_key not in str([entry.details_json for entry in session.execute(
            select(audit.AuditEntry)).scalars()])
    db.dispose()


def test_bad_iban_and_unknown_merchant_are_explained(tmp_path, sqlite_url):
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url}}),
                      encoding="utf-8")
    bad = _run(config, "add", "Winkel", "--categories", "school", "--iban", "NL91ABNA0417164301")
    assert bad.exit_code == 1 and "not valid" in bad.output
    missing = _run(config, "disable", "4242")
    assert missing.exit_code == 1 and "merchants list" in missing.output


def test_a_merchant_added_without_an_iban_gets_one_later(tmp_path, sqlite_url):
    # `merchants add` takes --iban as optional, and settlement carries a merchant without one to the next
    # batch: the operator must be able to give (or correct) it, or that shop is never paid.
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url}}),
                      encoding="utf-8")
    db = Database(sqlite_url)
    assert _run(config, "add", "Sportclub", "--categories", "sport").exit_code == 0
    with db.read() as session:
        merchant_id = session.execute(select(Merchant.id)).scalar_one()

    bad = _run(config, "set-iban", str(merchant_id), "NL91ABNA0417164301")
    assert bad.exit_code == 1 and "not valid" in bad.output
    assert _run(config, "set-iban", "4242", "NL91ABNA0417164300").exit_code == 1
    changed = _run(config, "set-iban", str(merchant_id), "NL91 ABNA 0417 1643 00")
    assert changed.exit_code == 0, changed.output
    with db.read() as session:
        assert session.get(Merchant, merchant_id).iban == "NL91ABNA0417164300"
        entry = session.execute(select(audit.AuditEntry).order_by(audit.AuditEntry.id.desc())).scalars().first()
        assert (entry.action, entry.object_ref) == ("merchant.iban_changed", f"merchant:{merchant_id}")
        assert audit.verify(session) == []
    db.dispose()


def test_an_iban_outside_the_sepa_zone_is_refused_with_the_reason(tmp_path, sqlite_url):
    """The municipality pays with a SEPA credit transfer: a valid IBAN of a country outside SEPA (Brazil here)
    cannot be paid that way, and in the file a bank refuses it."""
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": sqlite_url}}),
                      encoding="utf-8")
    refused = _run(config, "add", "Winkel", "--categories", "school", "--iban", "BR1800360305000010009795493C1")
    assert refused.exit_code == 1 and "SEPA" in refused.output
    db = Database(sqlite_url)
    try:
        with db.read() as session:
            assert session.execute(select(Merchant)).scalars().all() == []
    finally:
        db.dispose()


@pytest.mark.parametrize("name, why", [("W" * 201, "at most 200 characters"),
                                       ("Winkel\nWinkel", "control character"),
                                       ("Winkel\x7fWinkel", "control character"),
                                       ("Winkel\u2028Winkel", "control character"),
                                       ("Winkel\x85Winkel", "control character")])
def test_a_name_the_column_or_the_sepa_file_cannot_hold_is_explained(tmp_path, database_url, name, why):
    """On PostgreSQL a name longer than the column was a database traceback; a line break in it would break the
    settlement's CSV and SEPA lines."""
    config = tmp_path / "adapter.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "database": {"url": database_url}}),
                      encoding="utf-8")
    refused = _run(config, "add", name, "--categories", "school")
    assert refused.exit_code == 1 and why in refused.output and "Traceback" not in refused.output
    db = Database(database_url)
    try:
        with db.read() as session:
            assert session.execute(select(Merchant)).scalars().all() == []
    finally:
        db.dispose()
