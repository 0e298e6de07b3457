"""First start: trade the one-time enrollment token for the probe's credential."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import tempfile
from pathlib import Path

from probes.config import ProbeConfig
from probes.tls import client_context
from probes.transport import Transport, TransportError

log = logging.getLogger(__name__)


class EnrollmentFailed(Exception):
    """The collector refused the enrollment: retrying will not help. str() says why."""


class _CredentialFile:
    """Where the credential will be saved, made ready before the enrollment token is
    spent: the collector takes a token only once, so a credential that cannot be saved
    is lost for good. A temporary file (mode 0600) beside the credential file, renamed
    over it once written."""

    ROOM = 4096  # taken now, so that writing the credential later cannot lack space

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.temp: Path | None = None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            self.temp = Path(name)
            os.write(self.fd, b"\n" * self.ROOM)
            os.fsync(self.fd)
        except OSError as exc:
            self.discard()
            raise EnrollmentFailed(
                f"cannot write the credential file {path}: {exc.strerror}. The enrollment "
                f"token was not used: let the probe's user write in {path.parent} (with "
                "some free space), or set collector.token_file to another place, and "
                "start the probe again") from exc

    def save(self, token: str) -> None:
        data = (token + "\n").encode()
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)  # over the room taken: no new space needed
        os.ftruncate(self.fd, len(data))
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        assert self.temp is not None
        os.replace(self.temp, self.path)
        self.temp = None
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename, too, survives a power cut
        finally:
            os.close(directory)

    def discard(self) -> None:
        """Removes the temporary file, when the credential was not saved."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


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
    # A POST is never resent after a failure (Transport): the token works only once.
    # OSError for an unusable TLS file, before anything is written or spent.
    tls = client_context(settings)
    saved = _CredentialFile(settings.token_file)  # EnrollmentFailed before the token is spent
    backoff = settings.backoff_initial_s
    transport = Transport(settings.timeout_s, tls)
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
                saved.save(body["token"])
                log.info("enrolled as %s (%s); credential saved in %s", config.probe_id,
                         config.mission, settings.token_file)
                return body["token"]
            delay = random.uniform(0, backoff)
            backoff = min(backoff * 2, settings.backoff_max_s)
            log.warning("no collector answered the enrollment; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
    finally:
        transport.close()
        saved.discard()
