"""HTTP(S) requests, phase by phase. (Being built: run() is not written yet.)"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from probes.checks.base import CheckBase, CheckOutcome
from probes.measurement import HttpFigures


class HttpCheck(CheckBase):
    kind: Literal["http"]
    # target: the URL, http:// or https://
    method: Literal["GET", "HEAD"] = "GET"
    expected_status: list[int] = Field(default_factory=lambda: list(range(200, 400)))
    body_regex: str | None = None
    follow_redirects: bool = True
    max_redirects: int = Field(5, ge=0, le=20)
    tls_verify: bool = True
    ca_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)


def no_figures() -> HttpFigures:
    return HttpFigures()


async def run(check: HttpCheck) -> CheckOutcome:
    raise NotImplementedError("the http check is being built")
