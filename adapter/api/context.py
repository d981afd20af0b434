"""What handlers share: the runtime of this app. (The counter's notion of today is the core's:
``adapter.counter.counter_today``, the default of its functions.)"""

from __future__ import annotations

from flask import current_app

from adapter.runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["adapter_runtime"]
