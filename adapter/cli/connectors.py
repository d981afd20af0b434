"""CLI commands for sources: ``connectors list|check``, ``mappings validate``,
``sources preview``.

The foundation's ``main`` group adds these groups with ``add_command``. They
read settings from ``ctx.obj`` when the main group loaded them (an object or
dict with ``settings``, optionally ``base_dir`` and ``registry``); run on
their own, they load ``--config`` with ``adapter.settings.load_settings``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click

from adapter.connector import ConnectorError
from adapter.mapping import MappingError, load_mapping
from adapter.records import CardholderRecord, RejectedRecord
from adapter.redaction import mask_pass_number
from adapter.registry import ConnectorRegistry, RegistryError, default_registry
from adapter.sources import build_connector, map_records, open_source, run_check

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Configuration file (default: $ADAPTER_CONFIG or config/adapter.yaml).",
)


# -- context: settings and registry, from the main group or loaded here ----------


def _from_obj(ctx: click.Context, name: str) -> Any:
    obj = ctx.find_root().obj
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _registry(ctx: click.Context) -> ConnectorRegistry:
    try:
        return _from_obj(ctx, "registry") or default_registry()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None


def _settings(ctx: click.Context, config_path: Path | None) -> tuple[Any, Path | None]:
    """(settings, directory that relative option paths are read against)."""
    settings = _from_obj(ctx, "settings")
    if settings is not None and config_path is None:
        return settings, _from_obj(ctx, "base_dir")
    try:
        # Imported here: the foundation owns adapter.settings; this module stays importable alone.
        settings_module = importlib.import_module("adapter.settings")
        settings = settings_module.load_settings(config_path)
    except ModuleNotFoundError:
        raise click.ClickException("adapter.settings is not installed; cannot read the configuration") from None
    except Exception as exc:  # ConfigError lists every problem in its message
        raise click.ClickException(str(exc)) from None
    resolved = getattr(settings_module, "config_path_from_env", lambda path: path)(config_path)
    return settings, Path(resolved).resolve().parent if resolved else None


def _source(ctx: click.Context, config_path: Path | None, name: str) -> tuple[Any, Path | None]:
    settings, base_dir = _settings(ctx, config_path)
    sources = settings.sources
    if name not in sources:
        known = ", ".join(sorted(sources)) or "(none configured)"
        raise click.ClickException(f"no source '{name}' in the configuration; configured sources: {known}")
    # The main group's settings carry no base_dir of their own: each source then knows its configuration's
    # directory (set on load), as `sources preview` and `sync` read it.
    return sources[name], base_dir or getattr(sources[name], "base_dir", None)


# -- connectors ---------------------------------------------------------------------


@click.group("connectors")
def connectors_group() -> None:
    """Installed connectors and connection checks."""


@connectors_group.command("list")
@click.pass_context
def list_connectors(ctx: click.Context) -> None:
    """List the installed connectors (built-in and from other packages)."""
    registry = _registry(ctx)
    broken = False
    # One by one: a broken plug-in ended the whole listing in a traceback, hiding what is installed beside it.
    for name in registry.names():
        try:
            connector_class = registry.get(name)
        except RegistryError as exc:
            click.echo(f"{name:<12} BROKEN: {exc}")
            broken = True
            continue
        click.echo(f"{name:<12} {connector_class.description}  [{connector_class.__module__}]")
    if broken:
        ctx.exit(1)


@connectors_group.command("check")
@click.argument("source")
@config_option
@click.pass_context
def check_source(ctx: click.Context, source: str, config_path: Path | None) -> None:
    """Test a source's settings, then connection, then credentials."""
    source_settings, base_dir = _source(ctx, config_path, source)
    try:
        connector_class = _registry(ctx).get(source_settings.connector)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        connector = build_connector(connector_class, source_settings.options, source_name=source, base_dir=base_dir)
    except ConnectorError as exc:
        raise click.ClickException(str(exc)) from None
    result = run_check(connector, source_settings.connector)
    click.echo(result.render())
    if not result.ok:
        ctx.exit(1)


# -- mappings ---------------------------------------------------------------------


@click.group("mappings")
def mappings_group() -> None:
    """Mapping files: where each cardholder field comes from."""


@mappings_group.command("validate")
@click.argument("mapping_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@config_option
@click.pass_context
def validate_mappings(ctx: click.Context, mapping_file: Path | None, config_path: Path | None) -> None:
    """Check one mapping FILE, or the mappings of every configured source."""
    if mapping_file is not None:
        paths = [mapping_file]
    else:
        settings, _ = _settings(ctx, config_path)
        paths = sorted({source.mapping for source in settings.sources.values()})
        if not paths:
            raise click.ClickException("no sources are configured; give a mapping FILE to check")
    failed = 0
    for path in paths:
        try:
            mapping = load_mapping(path)
        except MappingError as exc:
            failed += 1
            click.echo(str(exc), err=True)
            continue
        click.echo(f"ok: {path} ({len(mapping.field_names)} fields)")
    if failed:
        ctx.exit(1)


# -- sources -----------------------------------------------------------------------


@click.group("sources")
def sources_group() -> None:
    """Configured sources."""


@sources_group.command("preview")
@click.argument("source")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many mapped records to show.")
@config_option
@click.pass_context
def preview_source(ctx: click.Context, source: str, limit: int, config_path: Path | None) -> None:
    """Read SOURCE and print its first mapped records (BSN and pass numbers masked)."""
    source_settings, base_dir = _source(ctx, config_path, source)
    try:
        connector, mapping = open_source(source_settings, _registry(ctx), source_name=source, base_dir=base_dir)
        shown = rejected = 0
        for result in map_records(connector, mapping):
            click.echo(describe_result(result))
            shown += 1
            rejected += isinstance(result, RejectedRecord)
            if shown >= limit:
                break
    except (ConnectorError, MappingError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"-- {shown} record(s) shown, {rejected} rejected (stopped at --limit {limit})"
               if shown >= limit else f"-- {shown} record(s), {rejected} rejected (end of source)")


def describe_result(result: CardholderRecord | RejectedRecord) -> str:
    if isinstance(result, RejectedRecord):
        return f"{result.source_key}: REJECTED: {result.reason}"
    name = " ".join(part for part in (result.first_names or result.initials, result.surname_prefix,
                                      result.surname) if part)
    validity = f"{result.valid_from or '?'}..{result.valid_until or '?'}"
    child = {True: "yes", False: "no", None: "?"}[result.is_child]
    return (
        f"{result.source_key}: household={result.household_id} cardholder={result.cardholder_id} "
        f"pass={mask_pass_number(result.pass_number)} bsn={'*********' if result.bsn else '-'} "
        f"name=\"{name}\" born={result.birth_date or '?'} status={result.pass_status.value} "
        f"valid={validity} child={child}"
    )
