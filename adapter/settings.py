"""Configuration: one YAML file, validated on load, every error reported at once.

Secrets never live in the file. The database URL with its password, the
encryption keys and source credentials come from ``ADAPTER_*`` environment
variables; a secret-looking key in the file is itself a configuration error,
so a password cannot slip into version control.

Relative paths in the file are resolved against the file's own directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapter.yaml_files import YamlFileProblem, read_yaml

DEFAULT_CONFIG_PATH = Path("config/adapter.yaml")
CONFIG_ENV = "ADAPTER_CONFIG"
ENVIRONMENT_ENV = "ADAPTER_ENVIRONMENT"

# Keys that hold secrets; they may only come from the environment.
_SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|api_key|apikey|token|private_key)$", re.I)
# A source's nightly time: "HH:MM", 00:00 to 23:59.
_SCHEDULE_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{self.path}: {len(problems)} problem(s) in the configuration:\n{listing}\n"
            "Fix these keys and run the command again."
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    # Without a password only: a URL with credentials belongs in ADAPTER_DATABASE_URL.
    url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite in data_dir")
    pool_size: int = Field(default=5, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _no_password_in_file(cls, url: str | None) -> str | None:
        if url and re.search(r"://[^/@]*:[^/@]*@", url):
            raise ValueError("holds a password; put the URL in ADAPTER_DATABASE_URL instead")
        return url


class RateLimitSettings(_Strict):
    balance_checks_per_minute: int = Field(default=120, ge=1)
    unknown_pass_lookups_per_minute: int = Field(default=10, ge=1)
    failed_sign_ins_per_minute: int = Field(default=5, ge=1)


class ApiSettings(_Strict):
    max_body_bytes: int = Field(default=16 * 1024, ge=512, le=1024 * 1024)
    max_amount_cents: int = Field(default=100_000, ge=1)
    reversal_window_days: int = Field(default=30, ge=0, le=366)
    key_rotation_grace_hours: int = Field(default=24, ge=0, le=24 * 90)
    # How long a redemption waits for a running twin with the same Idempotency-Key before
    # answering 409 (PostgreSQL; on SQLite writes queue and the twin replays).
    idempotency_wait_ms: int = Field(default=2_000, ge=10, le=30_000)
    # A worker remembers a key that authenticated this long: a disabled or rotated-out key
    # stops working within this time (0: look every key up on every request).
    auth_cache_seconds: int = Field(default=5, ge=0, le=60)
    # Proxies in front of the service (a load balancer, a TLS terminator) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed, counted from the service outwards. 0: none; the address a request came
    # from is the client's. Behind one load balancer: 1. More than there are lets a client pick its own address.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    rate_limits: RateLimitSettings = RateLimitSettings()


class SyncSettings(_Strict):
    grace_nights: int = Field(default=3, ge=0, le=60)
    max_change_share: float = Field(default=0.05, gt=0, le=1)
    min_row_share: float = Field(default=0.5, ge=0, le=1)
    # A run whose source sends nothing for this long is stopped: a connector without timeouts of its own would
    # otherwise hold the sync and the source's lock for ever. Generous: a SOAP page with its retries takes minutes.
    read_stall_minutes: float = Field(default=30, gt=0, le=24 * 60)


class SourceSettings(_Strict):
    connector: str = Field(min_length=1)
    mapping: Path
    enabled: bool = True
    # Local time in Europe/Amsterdam, "HH:MM"; checked by the scheduler.
    schedule: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # Set on load: the configuration file's directory, which relative paths in
    # ``options`` (a CSV folder, a WSDL file) are read against.
    base_dir: Path | None = None

    @field_validator("schedule", mode="before")
    @classmethod
    def _time_of_day(cls, schedule: Any) -> Any:
        if isinstance(schedule, int) and not isinstance(schedule, bool):
            # YAML 1.1 reads an unquoted 10:00 to 23:59 as a number in base 60 (and 04:15 as text), so pydantic's
            # "Input should be a valid string" left the operator looking at a time that looked right.
            raise ValueError(f"is the number {schedule}, not a time: YAML reads an unquoted time from 10:00 as a "
                             'number (23:30 as 1410). Write it in quotes, e.g. schedule: "23:30"')
        if schedule is not None and not (isinstance(schedule, str) and _SCHEDULE_TIME.fullmatch(schedule)):
            raise ValueError(f'{schedule!r} is not a time of day: write "HH:MM" on the 24-hour clock, Europe/'
                             'Amsterdam time, in quotes, e.g. schedule: "04:15"')
        return schedule


class LoggingSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: readable text on a terminal, one JSON object per line otherwise.
    format: Literal["auto", "text", "json"] = "auto"


class RetentionSettings(_Strict):
    months: int = Field(default=24, ge=1, le=240)


class SettlementSettings(_Strict):
    """Who pays the shops: the municipality's own account (public data, no secrets)."""

    debtor_name: str | None = Field(default=None, max_length=70)
    debtor_iban: str | None = None
    debtor_bic: str | None = None
    # The bank is asked to execute the transfers this many days after the batch is made.
    execution_delay_days: int = Field(default=2, ge=0, le=30)

    @field_validator("debtor_iban")
    @classmethod
    def _valid_iban(cls, iban: str | None) -> str | None:
        if iban is None:
            return None
        from schwifty import IBAN  # imported here: only configurations that settle pay for loading it

        try:
            parsed = IBAN(iban)
        except ValueError as exc:
            raise ValueError(f"not a valid IBAN ({exc})") from None
        if not parsed.in_sepa_zone:
            raise ValueError("an IBAN outside the SEPA zone cannot send a SEPA credit transfer")
        return str(parsed.compact)

    @field_validator("debtor_bic")
    @classmethod
    def _valid_bic(cls, bic: str | None) -> str | None:
        if bic is None:
            return None
        from schwifty import BIC

        try:
            return str(BIC(bic).compact)
        except ValueError as exc:
            raise ValueError(f"not a valid BIC ({exc})") from None


class Settings(_Strict):
    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("../var")
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    sync: SyncSettings = SyncSettings()
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    budgets: Path | None = None
    logging: LoggingSettings = LoggingSettings()
    retention: RetentionSettings = RetentionSettings()
    settlement: SettlementSettings = SettlementSettings()

    @property
    def database_url(self) -> str:
        """The environment wins over the file: that is where a password may live."""
        from_env = os.environ.get("ADAPTER_DATABASE_URL")
        if from_env:
            return from_env
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'adapter.db'}"

    @property
    def is_development(self) -> bool:
        return self.environment == "development"


def config_path_from_env(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read, check and return the configuration; raise ConfigError listing every problem."""
    config_path = config_path_from_env(path)
    try:
        raw = read_yaml(config_path, f"pass --config PATH or set {CONFIG_ENV}") or {}
    except YamlFileProblem as problem:
        raise ConfigError(config_path, [str(problem)]) from None
    if not isinstance(raw, dict):
        raise ConfigError(config_path, ["the top level must be a mapping of keys to values"])
    # An image or a unit file can force the mode without editing the file: the
    # Docker image sets production, so it never generates throw-away keys.
    forced = os.environ.get(ENVIRONMENT_ENV)
    if not forced:
        return settings_from_mapping(raw, config_path)
    try:
        return settings_from_mapping({**raw, "environment": forced}, config_path)
    except ConfigError as error:
        # The bad value is not in the file: name where it came from.
        raise ConfigError(config_path, [
            problem.replace("environment:", f"environment (from {ENVIRONMENT_ENV}={forced!r}):", 1)
            if problem.startswith("environment:") else problem for problem in error.problems]) from None


def settings_from_mapping(raw: dict[str, Any], config_path: Path) -> Settings:
    problems = [f"{key_path}: secrets come only from the environment (ADAPTER_*); remove it from the file"
                for key_path in _secret_key_paths(raw)]
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors())
        raise ConfigError(config_path, problems) from None
    if problems:
        raise ConfigError(config_path, problems)
    return _resolve_paths(settings, config_path.resolve().parent)


def _describe(error: Any) -> str:
    key_path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against config/adapter.yaml)"
    elif error["type"] == "value_error":  # our own validators' sentences, without pydantic's "Value error, "
        message = str(error["ctx"]["error"])
    return f"{key_path}: {message}"


def _secret_key_paths(node: Any, prefix: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            key_path = f"{prefix}.{key}" if prefix else str(key)
            if _SECRET_KEY_PATTERN.search(str(key)) and not isinstance(value, (dict, list)):
                found.append(key_path)
            found.extend(_secret_key_paths(value, key_path))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_secret_key_paths(value, f"{prefix}.{index}"))
    return found


def _resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    sources = {
        name: source.model_copy(update={"mapping": resolve(source.mapping),
                                        "base_dir": resolve(source.base_dir or Path("."))})
        for name, source in settings.sources.items()
    }
    return settings.model_copy(update={
        "data_dir": resolve(settings.data_dir),
        "budgets": resolve(settings.budgets) if settings.budgets else None,
        "sources": sources,
    })
