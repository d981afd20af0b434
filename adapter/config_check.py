"""Check the whole configuration before any I/O: every source's connector, options and mapping, and the budget rules.

``load_settings`` checks the file's own shape; this goes one step further and
asks each source's connector and mapping whether they accept their part, and
reads the budget rules file the nightly sync will read, so an operator sees every
problem in one run instead of one per night.
"""

from __future__ import annotations

from pydantic import ValidationError

from adapter.connector import describe_validation_error
from adapter.mapping import MappingError, load_mapping
from adapter.registry import ConnectorRegistry, RegistryError, default_registry
from adapter.rules import RulesError, load_rules
from adapter.settings import Settings


def source_problems(settings: Settings, registry: ConnectorRegistry | None = None) -> list[str]:
    """Every problem of every configured source, each prefixed with its key path."""
    try:
        registry = registry or default_registry()
    except RegistryError as exc:
        return [f"connectors: {exc}"]
    problems: list[str] = []
    for name, source in sorted(settings.sources.items()):
        prefix = f"sources.{name}"
        if source.connector not in registry:
            problems.append(f"{prefix}.connector: unknown connector '{source.connector}'; "
                            f"known connectors: {', '.join(registry.names()) or '(none installed)'}")
        else:
            try:
                registry.get(source.connector).options_model.model_validate(source.options)
            except ValidationError as exc:
                problems.extend(f"{prefix}.options.{problem}" for problem in describe_validation_error(exc))
            except RegistryError as exc:  # a plug-in is imported on first use: a broken one shows here
                problems.append(f"{prefix}.connector: {exc}")
        if source.enabled and source.schedule:
            # The scheduler refuses these times at start-up; say so before the first night, not then.
            from adapter.scheduler import dst_problem

            problem = dst_problem(f"{prefix}.schedule", source.schedule)
            if problem:
                problems.append(problem)
        try:
            load_mapping(source.mapping)
        except MappingError as exc:
            problems.extend(f"{prefix}.mapping ({source.mapping.name}): {problem}" for problem in exc.problems)
        except OSError:
            problems.append(f"{prefix}.mapping: cannot read {source.mapping}; check the path")
    return problems


def budget_rules_problems(settings: Settings) -> list[str]:
    """Every problem of the budget rules file (``budgets:``), each prefixed with the file's name. A broken file
    stops every sync and the roll-over until it is fixed: the scheduler reads it before each of them."""
    if settings.budgets is None:
        return []
    try:
        load_rules(settings.budgets)
    except RulesError as exc:
        return [f"budgets ({settings.budgets.name}): {problem}" for problem in exc.problems]
    return []
