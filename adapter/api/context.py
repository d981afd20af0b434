"""What handlers share: the runtime of this app and the counter's notion of today."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import current_app

from adapter.runtime import Runtime

# Pass validity and budget periods are local dates: a pass valid until 31 July works all of that day here.
LOCAL_ZONE = ZoneInfo("Europe/Amsterdam")


def runtime() -> Runtime:
    return current_app.extensions["adapter_runtime"]


def today() -> date:
    return datetime.now(LOCAL_ZONE).date()
