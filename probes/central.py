"""The probe's side of central check lists: fetch from the collector, merge with the
local config (a local check replaces a central one of the same id), remember the last
list on disk so a restart without the collector still measures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from probes.transport import Transport, TransportError
from unhindered.checks import CheckBase, CheckConfig

log = logging.getLogger(__name__)
_check = TypeAdapter(CheckConfig)


class CentralSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="fetch the check list from the collector")
    poll_s: float = Field(60, ge=1, le=86_400, description="how often to look for changes")


def merge(central: list[dict], local: list[CheckBase]) -> list[CheckBase]:
    """Central checks this probe understands, with local checks replacing or adding."""
    checks: dict[str, CheckBase] = {}
    for data in central:
        try:
            check = _check.validate_python(data)
        except ValidationError as exc:
            log.error("central check %s skipped: %s", data.get("id"), exc)
            continue
        checks[check.id] = check
    for check in local:
        checks[check.id] = check
    return list(checks.values())


class CentralChecks:
    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.checks: list[dict] = []
        self.version: str | None = None
        try:
            saved = json.loads(cache.read_text())
            self.checks, self.version = saved["checks"], saved["version"]
        except (OSError, ValueError, KeyError):
            pass

    async def poll(self, transport: Transport, urls: list[str], token: str) -> bool:
        """Asks the collectors (in order) for the list; True when it changed."""
        headers = {"Authorization": f"Bearer {token}"}
        if self.version:
            headers["If-None-Match"] = f'"{self.version}"'
        for url in urls:
            endpoint = f"{url.rstrip('/')}/api/v1/probe/checks"
            try:
                answer = await transport.request("GET", endpoint, headers=headers)
                if answer.status == 304:
                    return False
                if answer.status != 200:
                    log.warning("%s answered %d: %s", endpoint, answer.status,
                                answer.text()[:300])
                    continue
                body = answer.json()
            except (TransportError, ValueError) as exc:
                log.info("central checks: %s: %s", endpoint, exc)
                continue
            if body.get("version") == self.version:
                return False
            self.checks, self.version = body["checks"], body["version"]
            tmp = self.cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"checks": self.checks, "version": self.version}))
            tmp.replace(self.cache)
            log.info("central check list %s: %d checks", self.version, len(self.checks))
            return True
        return False
