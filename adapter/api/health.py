"""Liveness and readiness, for load balancers and the Docker HEALTHCHECK."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from adapter import migrate
from adapter.api.problems import problem
from adapter.key_match import keys_open_none
from adapter.limits import UNAVAILABLE_RETRY_AFTER_SECONDS, LimitsUnavailable

blueprint = Blueprint("health", __name__)
# A load balancer, or a person, asks again after this long: every not-ready answer is a 503 the OpenAPI document
# gives a Retry-After.
_ASK_AGAIN = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}


@blueprint.get("/health")
def health():  # type: ignore[no-untyped-def]
    """The process answers; the database is not touched."""
    return jsonify(status="ok")


@blueprint.get("/ready")
def ready():  # type: ignore[no-untyped-def]
    """The database answers, its schema is the one this code expects, this server's encryption keys open the stored
    cardholders, and Redis answers when the limits are counted there (without it every look-up is refused:
    ``adapter.limits.LimitsUnavailable``)."""
    runtime = current_app.extensions["adapter_runtime"]
    database = runtime.db
    try:
        current = migrate.is_current(database)  # reads the schema's revision: the database answers
        keys_wrong = False
        if current:  # the cardholders' columns are the ones this code reads
            with database.read() as session:
                keys_wrong = keys_open_none(session, runtime.vault)
    except migrate.SchemaNewerThanCode as exc:
        current_app.logger.warning("readiness check: %s", exc)
        raise problem("migrations_pending", f"Het databaseschema ({exc.current}) is nieuwer dan deze versie van de "
                                            f"adapter kent ({exc.newest_known}). Installeer op deze server dezelfde "
                                            "versie als op de andere servers; voer geen downgrade uit.", headers=_ASK_AGAIN) from None
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        current_app.logger.warning("readiness check: database unreachable")
        raise problem("database_unavailable", "De database is niet bereikbaar. Controleer ADAPTER_DATABASE_URL en of "
                                              "de databaseserver draait.", headers=_ASK_AGAIN) from None
    try:
        current_app.extensions["adapter_limiter"].check()
    except LimitsUnavailable as exc:
        current_app.logger.warning("readiness check: %s", exc)
        raise problem("limits_unavailable", "Redis, waar de limieten worden geteld, is niet bereikbaar; saldochecks "
                                            "en betalingen worden geweigerd. Start Redis of controleer "
                                            "ADAPTER_REDIS_URL.", headers=_ASK_AGAIN) from None
    if not current:
        raise problem("migrations_pending", "Het databaseschema is niet actueel. Voer `stadspas-adapter db upgrade` "
                                            "uit.", headers=_ASK_AGAIN)
    if keys_wrong:
        # A host started with another installation's keys (or a new pair) answered ready, and then a 500 to every
        # balance check the load balancer sent it.
        current_app.logger.warning("readiness check: the configured encryption keys open none of the stored "
                                   "cardholders")
        raise problem("keys_unusable", "De sleutels van deze server (ADAPTER_ENCRYPTION_KEYS) openen de opgeslagen "
                                       "gegevens niet, dus elke saldocheck zou mislukken. Geef deze server dezelfde "
                                       "sleutels als de andere servers en start hem opnieuw; `stadspas-adapter keys "
                                       "check` zegt meer.", headers=_ASK_AGAIN)
    return jsonify(status="ready")
