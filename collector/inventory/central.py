"""Central check lists: engineers change targets in one file at the centre, and every
probe fetches its list from the collector (GET /api/v1/probe/checks).

The file holds checks for every probe (`all`), per mission and per probe; a later level
replaces an earlier check of the same id. It is validated with the probe's own check
models, so a mistake is reported here, with file, line and field, not on 195 probes. It
is re-read when it changes; a broken edit is refused and the last good lists stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unhindered.checks import CheckConfig
from unhindered.configfile import ConfigError, load_model
from unhindered.measurement import Identifier, MissionCode

log = logging.getLogger(__name__)


class CentralChecksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: list[CheckConfig] = Field(default_factory=list)
    missions: dict[MissionCode, list[CheckConfig]] = Field(default_factory=dict)
    probes: dict[Identifier, list[CheckConfig]] = Field(default_factory=dict)

    @field_validator("all")
    @classmethod
    def _unique(cls, checks: list) -> list:
        ids = [c.id for c in checks]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"check ids used twice: {', '.join(duplicates)}")
        return checks


class CentralChecks:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._file = CentralChecksFile()
        self.refresh()

    def refresh(self) -> None:
        """Re-reads the file if it changed; keeps the last good version on a mistake."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            log.error("central checks file %s: %s; keeping the last good lists", self.path,
                      exc)
            return
        if mtime == self._mtime:
            return
        try:
            # Not check_files: a check's ca_file is a path on the probes, not here.
            self._file = load_model(self.path, CentralChecksFile, check_files=False)
        except ConfigError as exc:
            if self._mtime is None:
                raise
            log.error("central checks file changed but is refused; the last good lists "
                      "stay: %s", exc)
        else:
            log.info("central checks loaded from %s", self.path)
        self._mtime = mtime

    def for_probe(self, probe_id: str, mission: str) -> tuple[list[dict], str]:
        """The probe's checks as JSON-ready dicts, and a version tag of that list."""
        self.refresh()
        merged: dict[str, dict] = {}
        for level in (self._file.all, self._file.missions.get(mission, []),
                      self._file.probes.get(probe_id, [])):
            for check in level:
                merged[check.id] = check.model_dump(mode="json", exclude_defaults=True) | {
                    "id": check.id, "kind": check.kind}
        checks = list(merged.values())
        version = hashlib.sha256(json.dumps(checks, sort_keys=True).encode()).hexdigest()[:32]
        return checks, version
