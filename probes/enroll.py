"""First start: trade the one-time enrollment token for the probe's credential."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from pathlib import Path

from probes.config import ProbeConfig
from probes.transport import Transport, TransportError

log = logging.getLogger(__name__)


class EnrollmentFailed(Exception):
    """The collector refused the enrollment: retrying will not help. str() says why."""


def _save(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())


async def credential(config: ProbeConfig) -> str:
    """The probe's credential: from the config or its file, or, when the file does not
    exist yet, obtained once with the enrollment token and saved to that file."""
    settings = config.collector
    if settings.token is not None:
        return settings.token.get_secret_value()
    assert settings.token_file is not None
    if settings.token_file.exists():
        return settings.read_token()
    enrollment = settings.read_enrollment_token()
    if enrollment is None:
        raise EnrollmentFailed(f"{settings.token_file} does not exist and no enrollment token "
                               "is configured (collector.enrollment_token)")
    backoff = settings.backoff_initial_s
    transport = Transport(settings.timeout_s)
    try:
        while True:
            for url in settings.urls:
                endpoint = f"{str(url).rstrip('/')}/api/v1/enroll"
                request = json.dumps({"enrollment_token": enrollment}).encode()
                try:
                    answer = await transport.request(
                        "POST", endpoint, request, {"Content-Type": "application/json"})
                    body = answer.json()
                except (TransportError, ValueError) as exc:
                    log.warning("enrollment at %s failed: %s", endpoint, exc)
                    continue
                if answer.status == 403:
                    raise EnrollmentFailed(f"{endpoint} refused the enrollment: "
                                           f"{body.get('error')}")
                if answer.status != 200:
                    log.warning("enrollment at %s: %d %s", endpoint, answer.status, body)
                    continue
                if (body.get("probe_id"), body.get("mission")) != (config.probe_id,
                                                                   config.mission):
                    raise EnrollmentFailed(
                        f"the enrollment token is for probe {body.get('probe_id')} of "
                        f"{body.get('mission')}, but this probe is {config.probe_id} of "
                        f"{config.mission}: fix probe_id and mission in the config")
                _save(settings.token_file, body["token"])
                log.info("enrolled as %s (%s); credential saved in %s", config.probe_id,
                         config.mission, settings.token_file)
                return body["token"]
            delay = random.uniform(0, backoff)
            backoff = min(backoff * 2, settings.backoff_max_s)
            log.warning("no collector answered the enrollment; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
    finally:
        transport.close()
