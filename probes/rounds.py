"""Runs one round of a check and turns its outcome into a Measurement."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from probes.config import ProbeConfig
from unhindered.measurement import (
    TIME_DIGITS,
    AnyMeasurement,
    FailureReason,
    clean_text,
    to_microseconds,
)
from unhindered.probing import KINDS, CheckBase, CheckOutcome, icmp

log = logging.getLogger(__name__)


async def measure(
    check: CheckBase, probe_id: str, mission: str, confirmation: bool = False
) -> AnyMeasurement:
    kind = KINDS[check.kind]  # type: ignore[attr-defined]
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    try:
        outcome = await kind.run(check)
    except Exception as exc:  # a bug or an OS refusal must still leave a result
        log.exception("check %s failed unexpectedly", check.id)
        outcome = CheckOutcome(
            ok=False, reason=FailureReason.ERROR, detail=f"{type(exc).__name__}: {exc}",
            figures=kind.no_figures(),
        )
    return kind.measurement(
        probe_id=probe_id,
        mission=mission,
        check_id=check.id,
        group=check.group,
        target=check.target,
        ip_version=outcome.ip_version,
        started_at=started_at,
        duration_s=round(time.perf_counter() - started, TIME_DIGITS),
        ok=outcome.ok,
        reason=outcome.reason,
        # Every check's detail passes here: what a server answered (a status line, an
        # error's text) may hold control characters, which the wire refuses.
        detail=None if outcome.detail is None else clean_text(outcome.detail, 500),
        figures=to_microseconds(outcome.figures),
        confirmation=confirmation,
        interval_s=check.interval_s,
    )


async def measure_all(config: ProbeConfig) -> list[AnyMeasurement]:
    """Every check once, at the same time (`unhindered-probe once`)."""
    icmp.engine(config.icmp)
    return await asyncio.gather(*(measure(c, config.probe_id, config.mission)
                                  for c in config.checks))
