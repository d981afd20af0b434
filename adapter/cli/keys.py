"""Encryption keys for personal data: generate, rotate, check."""

from __future__ import annotations

import click

from adapter import key_rotation
from adapter.cli.base import CliContext, operator_actor, pass_cli
from adapter.crypto import generate_blind_index_key, generate_encryption_key
from adapter.key_match import stored_keys_problem


@click.group("keys")
def keys_group() -> None:
    """Encryption keys for personal data."""


@keys_group.command("generate")
def keys_generate() -> None:
    """Print a fresh encryption key and blind-index key (put them in your secret store)."""
    click.echo(f"ADAPTER_ENCRYPTION_KEYS={generate_encryption_key()}")
    click.echo(f"ADAPTER_BLIND_INDEX_KEY={generate_blind_index_key()}")
    click.echo("# A new installation takes both lines. To rotate: put only the new encryption key first in "
               "ADAPTER_ENCRYPTION_KEYS, keep the old ones after it, keep ADAPTER_BLIND_INDEX_KEY as it is (the "
               "stored BSN look-ups and request fingerprints are keyed with it), then run "
               "`stadspas-adapter keys rotate`.", err=True)


@keys_group.command("rotate")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=key_rotation.DEFAULT_BATCH_SIZE,
              show_default=True, help="Rows per transaction.")
@pass_cli
def keys_rotate(cli: CliContext, batch_size: int) -> None:
    """Re-encrypt all personal data under the first key in ADAPTER_ENCRYPTION_KEYS.

    Safe to interrupt and run again: finished batches stay rotated and are skipped.
    """
    vault = cli.vault

    def show_progress(progress: key_rotation.TableProgress) -> None:
        click.echo(f"{progress.table}: {progress.rows_examined} row(s) examined, "
                   f"{progress.rows_rewritten} rewritten", err=True)

    try:
        report = key_rotation.rotate(cli.runtime.db, vault, actor=operator_actor(), batch_size=batch_size,
                                     on_batch=show_progress)
    except key_rotation.UnreadableRows as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rotated: {report.rows_rewritten} of {report.rows_examined} row(s) rewritten under the newest key")
    if not report.scrubbed:
        click.echo("An open reader kept some old tokens on disk until the database's next check-point or vacuum: "
                   "run this command again when the service is quiet, before removing the old key.", err=True)
    click.echo("Run `stadspas-adapter keys check` before removing an old key.", err=True)


@keys_group.command("check")
@pass_cli
def keys_check(cli: CliContext) -> None:
    """Count rows still encrypted under an old key, and check the blind-index key; exit 1 while either needs
    doing."""
    statuses = key_rotation.check(cli.runtime.db, cli.vault)
    for status in statuses:
        click.echo(f"{status.table}: {status.rows_under_old_keys} of {status.rows_with_personal_data} "
                   "row(s) under an old key" + (f", {status.rows_unreadable} under no configured key"
                                               if status.rows_unreadable else ""))
    unreadable = sum(status.rows_unreadable for status in statuses)
    if unreadable:
        raise click.ClickException(f"{unreadable} row(s) {key_rotation.UNREADABLE_ADVICE}")
    with cli.runtime.db.read() as session:
        keys_problem = stored_keys_problem(session, cli.vault)
    if keys_problem:
        raise click.ClickException(keys_problem)
    stale = sum(status.rows_under_old_keys for status in statuses)
    if stale:
        raise click.ClickException(f"{stale} row(s) still need an old key: run `stadspas-adapter keys rotate` "
                                   "and do not remove old keys from ADAPTER_ENCRYPTION_KEYS yet")
    click.echo(_all_under_the_first_key(cli.vault.key_count))


def _all_under_the_first_key(key_count: int) -> str:
    """Which keys may go, by place: a new key added after the old ones instead of before them leaves every row
    under the old one, which must then stay."""
    if key_count == 1:
        return "every row is under the one key in ADAPTER_ENCRYPTION_KEYS"
    return (f"every row is under the first key in ADAPTER_ENCRYPTION_KEYS: the {key_count - 1} after it may be "
            "removed. Keep the first, which reads every row; if it is not the new key you meant to rotate to, put "
            "the new key first and run `stadspas-adapter keys rotate`")
