"""A wrk Lua script per load: POST a JSON body, rotating values, a distinct Idempotency-Key per request.

Every wrk run passes its own nonce (``-- NONCE``): keys never repeat across runs,
so no request is answered as an idempotent replay. The script prints one "BENCH-WRK {json}" line at the end with requests, errors
and latency percentiles (microseconds), so the bench never parses wrk's text.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

_TEMPLATE = r"""
local values = {%(values)s}
local path = %(path)s
local template = %(template)s
local headers = {%(headers)s}
local nonce = %(nonce)s
local thread_count = 0

-- The run's own nonce comes as the script argument, so every run of this file makes new keys.
function init(args)
  if args[1] then nonce = nonce .. "-" .. args[1] end
end

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local counter = 0
function request()
  counter = counter + 1
  local value = values[((counter * 7919 + (tid or 1) * 104729) %% #values) + 1]
  local key = nonce .. "-" .. (tid or 1) .. "-" .. counter
  local request_headers = {}
  for name, header in pairs(headers) do request_headers[name] = header end
  request_headers["Idempotency-Key"] = key
  local body = string.gsub(string.gsub(template, "{value}", value), "{key}", key)
  return wrk.format("POST", path, request_headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH-WRK {"requests":%%d,"duration_us":%%d,"status_errors":%%d,"socket_errors":%%d,' ..
    '"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def write_script(folder: Path, name: str, path: str, body_template: str, values: list[str],
                 headers: dict[str, str]) -> Path:
    """``body_template`` holds ``{value}`` (rotated from ``values``) and optionally ``{key}``."""
    script = folder / f"{name}.lua"
    script.write_text(_TEMPLATE % {
        "values": ", ".join(_lua_string(value) for value in values),
        "path": _lua_string(path),
        "template": _lua_string(body_template),
        "headers": ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()),
        "nonce": _lua_string(uuid.uuid4().hex[:12]),
    }, encoding="utf-8")
    return script
