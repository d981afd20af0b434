"""The whole schema: every module that defines tables, imported in one place.

Most models live in ``adapter.models``; a few live beside the code that owns
them (the audit trail, rate counters). Alembic and the schema test read
``metadata`` from here, so no table is forgotten.
"""

from adapter import admins, audit, grants, models, ratelimit, settlement, web_sessions  # noqa: F401 - their tables

metadata = models.Base.metadata
