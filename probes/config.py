"""The probe's YAML configuration (see docs/probe-config.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from probes.central import CentralSettings
from probes.local import GATEWAY_CHECK_ID, RESOLVER_CHECK_ID, LocalSettings
from probes.path.settings import PathSettings
from unhindered.checks import CheckConfig
from unhindered.checks.icmp import IcmpSettings
from unhindered.configfile import ReadFile, WriteFile, load_model
from unhindered.logsetup import LoggingSettings
from unhindered.measurement import Identifier, MissionCode
from unhindered.snmp.settings import SnmpSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectorSettings(_Section):
    urls: Annotated[list[AnyHttpUrl], Field(min_length=1)] = Field(
        description="collector base URLs, tried in order"
    )
    token: SecretStr | None = Field(
        None, description="the probe's credential; set this or token_file")
    # Read when it exists; written once, at enrollment, when it does not yet.
    token_file: Annotated[Path | None, ReadFile(secret=True, unless_written_by=(
        "enrollment_token", "enrollment_token_file"))] = Field(
        None, description="file holding the probe's credential; the credential obtained "
                          "at enrollment is saved there")
    enrollment_token: SecretStr | None = Field(
        None, description="one-time token printed by `unhindered-collector probes add`, "
                          "traded for the credential at first start")
    enrollment_token_file: Annotated[Path | None, ReadFile(
        secret=True, needed_until="token_file")] = Field(
        None, description="file holding the enrollment token, instead of enrollment_token")
    batch_max_size: int = Field(500, ge=1, le=5_000, description="results per request")
    batch_max_age_s: float = Field(
        10.0, ge=0, le=3_600,
        description="longest a result waits before being sent; a confirmed change of a "
                    "check's outcome is sent at once")
    timeout_s: float = Field(10.0, gt=0, le=300, description="per request, in seconds")
    backoff_initial_s: float = Field(
        1.0, gt=0, le=600, description="retry delay after every URL failed; it doubles "
                                       "after each failed attempt, with full jitter")
    backoff_max_s: float = Field(60.0, gt=0, le=3_600,
                                 description="the retry delay at most")
    heartbeat_s: float = Field(
        10.0, ge=1, le=600,
        description="when nothing else was sent to the collector for this long, a heartbeat "
                    "of a few bytes is (POST /api/v1/heartbeat, docs/protocol.md): the "
                    "collector counts a probe it hears nothing from for its "
                    "states.probe_silent_s (20 s) as silent, so keep this at most half "
                    "of that; about 360 requests an hour when idle, 0.2 MB/h")
    ca_file: Annotated[Path | None, ReadFile()] = Field(
        None, description="CA certificate(s) (PEM) that an https:// collector's certificate "
                          "must be signed by; unset: the system's CA store")
    client_cert_file: Annotated[Path | None, ReadFile()] = Field(
        None, description="the probe's client certificate (PEM), for a collector that asks "
                          "for one (mutual TLS); set with client_key_file")
    client_key_file: Annotated[Path | None, ReadFile(secret=True)] = Field(
        None, description="the client certificate's private key (PEM, unencrypted, mode 0600)")

    @model_validator(mode="after")
    def _client_pair(self) -> CollectorSettings:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("set both client_cert_file and client_key_file, or neither")
        return self

    @model_validator(mode="after")
    def _one_token(self) -> CollectorSettings:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of token and token_file")
        if self.enrollment_token is not None and self.enrollment_token_file is not None:
            raise ValueError("set at most one of enrollment_token and enrollment_token_file")
        enrolling = self.enrollment_token is not None or self.enrollment_token_file is not None
        if enrolling and self.token_file is None:
            raise ValueError("enrollment needs token_file: where to keep the credential")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self

    def read_enrollment_token(self) -> str | None:
        if self.enrollment_token is not None:
            return self.enrollment_token.get_secret_value()
        if self.enrollment_token_file is not None:
            return self.enrollment_token_file.read_text(encoding="utf-8").strip()
        return None

    def read_token(self) -> str:
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None
        return self.token_file.read_text(encoding="utf-8").strip()


class MetricsSettings(_Section):
    """The probe's own /metrics (off unless configured)."""

    listen: str = Field(description="HOST:PORT, e.g. 127.0.0.1:9641")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9641")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ProbeConfig(_Section):
    probe_id: Identifier = Field(
        description="the probe's id, as registered with `unhindered-collector probes add`")
    mission: MissionCode = Field(description="the mission's code, as registered")
    outbox: Annotated[Path, WriteFile()] = Field(
        description="SQLite file holding results until the collector acknowledged them")
    # About 0.6 KiB a result (ICMP, TCP; HTTP more): 256 MiB hold two weeks of 10 checks
    # every 30 s. When full (or the disk is), the oldest are dropped, counted (docs/probe.md).
    outbox_max_mib: int = Field(256, ge=1, le=1024 * 1024,
                                description="bound on the outbox file, in MiB")
    collector: CollectorSettings = Field(description="where and how results are sent")
    checks: list[CheckConfig] = Field(
        default_factory=list, description="what to measure (docs/probe.md)")
    central: CentralSettings = Field(
        CentralSettings(), description="check lists the collector hands out")
    icmp: IcmpSettings = Field(IcmpSettings(), description="the ICMP engine")
    local: LocalSettings = Field(
        LocalSettings(), description="the mission's own gateway and resolver, measured so "
                                     "that their faults are not blamed on targets")
    metrics: MetricsSettings | None = Field(
        None, description="the probe's own /metrics; off unless set")
    logging: LoggingSettings = Field(LoggingSettings(), description="log format and level")
    snmp: SnmpSettings | None = Field(
        None, description="the SNMP agent and notifications (docs/snmp.md); off unless set")
    path: PathSettings = Field(
        PathSettings(), description="recording the path to a check's target when it fails "
                                    "and as a daily baseline (docs/path.md)")

    @model_validator(mode="after")
    def _something_to_measure(self) -> ProbeConfig:
        if not self.checks and not self.central.enabled:
            raise ValueError("no checks: list some, or enable central checks")
        return self

    @field_validator("checks")
    @classmethod
    def _unique_ids(cls, checks: list) -> list:
        seen = {GATEWAY_CHECK_ID, RESOLVER_CHECK_ID}
        for check in checks:
            if check.id in (GATEWAY_CHECK_ID, RESOLVER_CHECK_ID):
                raise ValueError(f"check id {check.id!r} is reserved for the local context")
            if check.id in seen:
                raise ValueError(f"check id {check.id!r} is used twice")
            seen.add(check.id)
        return checks


def load(path: Path) -> ProbeConfig:
    return load_model(path, ProbeConfig)
