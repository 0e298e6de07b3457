"""The little of Alertmanager's HTTP API v2 the collector uses, over urllib (no proxy: the
Alertmanager is the operator's, reached directly)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any


class AlertmanagerError(RuntimeError):
    pass


def call(base_url: str, path: str, method: str = "GET", body: Any = None,
         timeout: float = 10.0) -> Any:
    """The decoded JSON answer; AlertmanagerError saying what failed."""
    url = base_url.rstrip("/") + "/api/v2" + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        with err:
            detail = err.read()[:300].decode(errors="replace")
        raise AlertmanagerError(f"{method} {url} answered {err.code}: {detail}") from None
    except (OSError, TimeoutError) as err:
        raise AlertmanagerError(f"{method} {url} failed: {err}") from None
    return json.loads(raw) if raw.strip() else None


def iso(t: float) -> str:
    """Unix seconds as the RFC 3339 time Alertmanager's API takes."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
