"""Merchants (shops, clubs, foundations) and their API keys. Every change leaves an audit record."""

from __future__ import annotations

from datetime import timedelta

import click

from adapter import audit, merchants
from adapter.cli.base import CliContext, operator_actor, pass_cli
from adapter.models import MerchantKey, utcnow


@click.group("merchants")
def merchants_group() -> None:
    """Add merchants, rotate their keys, set their IBAN, disable them."""


@merchants_group.command("add")
@click.argument("name")
@click.option("--categories", required=True,
              help="Comma-separated budget categories it may redeem, e.g. school,clothing ('*' for all).")
@click.option("--iban", default=None, help="Where the municipality reimburses it (checked).")
@pass_cli
def merchants_add(cli: CliContext, name: str, categories: str, iban: str | None) -> None:
    """Add a merchant and print its API key (shown only this once)."""
    try:
        with cli.runtime.db.write() as session:
            issued = merchants.add_merchant(session, name, categories.split(","), iban=iban)
            audit.record(session, operator_actor(), "merchant.created", f"merchant:{issued.merchant_id}",
                         categories=sorted({code.strip() for code in categories.split(",") if code.strip()}),
                         iban_given=iban is not None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"merchant {issued.merchant_id} added")
    click.echo(f"API key (shown once; give it to the shop's till supplier): {issued.api_key}")


@merchants_group.command("list")
@pass_cli
def merchants_list(cli: CliContext) -> None:
    """Every merchant with its categories, state and working key prefixes (never the keys); a key that stops
    working (rotated out) says until when."""
    now = utcnow()
    with cli.runtime.db.read() as session:
        for merchant in merchants.list_merchants(session):
            state = "active" if merchant.active else "disabled"
            # A key past its rotation grace is refused like a revoked one: listed, it sent the operator helping a shop
            # whose till says "unknown, expired or revoked" looking elsewhere.
            prefixes = ",".join(_key_label(key) for key in merchant.keys if key.works_at(now))
            click.echo(f"{merchant.id}\t{merchant.name}\t{merchant.categories}\t{state}\t{merchant.iban or '-'}"
                       f"\tkeys:{prefixes or '-'}")


def _key_label(key: MerchantKey) -> str:
    until = f" until {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at is not None else ""
    return f"{key.key_prefix}…{until}"


@merchants_group.command("rotate-key")
@click.argument("merchant_id", type=int)
@pass_cli
def merchants_rotate_key(cli: CliContext, merchant_id: int) -> None:
    """A new key; old keys keep working for api.key_rotation_grace_hours."""
    grace = timedelta(hours=cli.settings.api.key_rotation_grace_hours)
    try:
        with cli.runtime.db.write() as session:
            issued = merchants.rotate_key(session, merchant_id, grace)
            audit.record(session, operator_actor(), "merchant.key_rotated", f"merchant:{merchant_id}",
                         grace_hours=cli.settings.api.key_rotation_grace_hours)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"new API key (shown once): {issued.api_key}")
    click.echo(f"the old key(s) keep working for {cli.settings.api.key_rotation_grace_hours} hour(s)")


@merchants_group.command("set-iban")
@click.argument("merchant_id", type=int)
@click.argument("iban")
@pass_cli
def merchants_set_iban(cli: CliContext, merchant_id: int, iban: str) -> None:
    """Give or correct the IBAN the municipality reimburses it on (checked; from the next settlement on)."""
    try:
        with cli.runtime.db.write() as session:
            merchants.set_iban(session, merchant_id, iban)
            audit.record(session, operator_actor(), "merchant.iban_changed", f"merchant:{merchant_id}")
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"merchant {merchant_id} is reimbursed on this IBAN from the next settlement batch on")


@merchants_group.command("disable")
@click.argument("merchant_id", type=int)
@pass_cli
def merchants_disable(cli: CliContext, merchant_id: int) -> None:
    """Refuse all of this merchant's keys from now on (its history stays)."""
    try:
        with cli.runtime.db.write() as session:
            merchants.disable_merchant(session, merchant_id)
            audit.record(session, operator_actor(), "merchant.disabled", f"merchant:{merchant_id}")
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"merchant {merchant_id} disabled; its keys no longer work")
