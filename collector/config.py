"""The collector's YAML configuration (see docs/collector-config.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from collector.control.settings import ControlSettings
from collector.inventory.maintenance import TimeZoneName
from collector.inventory.sites import Inventory, default_inventory, load_inventory
from collector.snmp.settings import SnmpSettings
from collector.state.hysteresis import Policy
from unhindered.configfile import ReadFile, WriteFile, load_model
from unhindered.logsetup import LoggingSettings

DEFAULT_PORT = 9640


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenSettings(_Section):
    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 for every IPv4")
    port: int = Field(DEFAULT_PORT, ge=1, le=65_535, description="TCP port to listen on")


class TlsSettings(_Section):
    """HTTPS served by the collector itself (docs/deploy.md, "TLS"). SIGHUP reads the three
    files again; the paths are those of the config the collector started with."""

    cert_file: Annotated[Path, ReadFile()] = Field(
        description="the collector's certificate (PEM), followed by its intermediate CA "
                    "certificates")
    key_file: Annotated[Path, ReadFile(secret=True)] = Field(
        description="the certificate's private key (PEM, unencrypted, mode 0600)")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="oldest TLS version "
                                                                  "accepted")
    client_certs: Literal["off", "optional", "required"] = Field(
        "off", description="mutual TLS: off; optional (a certificate, when a client shows "
                           "one, must be signed by client_ca_file); required (a client "
                           "without one is refused). Always beside the probe's token, never "
                           "instead of it")
    client_ca_file: Annotated[Path | None, ReadFile()] = Field(
        None, description="the CA certificate(s) (PEM) that sign the probes' client "
                          "certificates; needed unless client_certs is off")

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, float) else value  # YAML reads 1.2 as a number

    @field_validator("client_certs", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare off as false

    @model_validator(mode="after")
    def _client_ca(self) -> TlsSettings:
        if self.client_certs != "off" and self.client_ca_file is None:
            raise ValueError(f"client_certs: {self.client_certs} needs client_ca_file, the "
                             "CA that signs the probes' certificates")
        return self


def sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for PostgreSQL or an in-memory database)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.removeprefix(prefix) in ("", ":memory:"):
        return None
    return Path(url.removeprefix(prefix).partition("?")[0])


class DatabaseSettings(_Section):
    url: Annotated[str, WriteFile(path_of=sqlite_file)] = Field(
        "sqlite:///unhindered.sqlite",
        description="sqlite:///PATH (a relative path is relative to this file) or "
                    "postgresql://USER@HOST/DB")

    @field_validator("url")
    @classmethod
    def _relative_sqlite(cls, value: str, info: ValidationInfo) -> str:
        prefix = "sqlite:///"
        base = (info.context or {}).get("config_dir")
        if value.startswith(prefix) and base is not None:
            path = Path(value.removeprefix(prefix))
            if not path.is_absolute() and str(path) != ":memory:":
                return prefix + str((Path(base) / path).resolve())
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError("expected a sqlite:/// or postgresql:// URL")
        return value


class IngestSettings(_Section):
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=1024**3,
                                description="largest accepted batch, after decompression")
    max_future_s: float = Field(300, ge=0, le=86_400,
                                description="how far ahead of the collector's clock a "
                                            "measurement time may be")


class LimitsSettings(_Section):
    """What anyone who can reach the port may cost the collector, credential or not
    (docs/security.md)."""

    max_connections: int = Field(
        1024, ge=16, le=1_000_000,
        description="open connections at most; when full, a new one makes room by closing "
                    "the oldest idle one. Lowered to fit the descriptor limit (LimitNOFILE)")
    header_timeout_s: float = Field(
        10, gt=0, le=3_600, description="a new connection's request head must be complete "
                                        "this long after it opened, or it is closed")
    keepalive_timeout_s: float = Field(
        30, gt=0, le=3_600, description="a connection idle this long after an answer is "
                                        "closed (the next head must be complete by then)")
    body_timeout_s: float = Field(
        30, gt=0, le=3_600, description="a request body must have arrived this long after "
                                        "its head; a refused one is drained this long at most")
    enroll_per_minute: int = Field(
        10, ge=1, le=10_000, description="enrollment attempts per source address (IPv6: "
                                         "per /64) and minute; more are answered 429")


class StateSettings(_Section):
    """Hysteresis: how many rounds it takes to change state (see docs/states.md)."""

    fail_k: int = Field(3, ge=1, le=100, description="down when this many of ...")
    window_n: int = Field(5, ge=1, le=100, description="... the last this many rounds failed")
    recover_m: int = Field(2, ge=1, le=100, description="good rounds in a row to recover")
    silent_intervals: float = Field(3, ge=1, le=1_000,
                                    description="unknown after this many intervals of silence")
    probe_silent_s: float = Field(
        20, ge=2, le=3_600,
        description="a probe that sends heartbeats (collector.heartbeat_s, 10 s by default) "
                    "and is not heard from for this long (no heartbeat, no batch) is silent: "
                    "every check it runs is unknown from when it was last heard plus this. "
                    "Two heartbeat periods: a heartbeat may come up to one period late (TCP "
                    "resending a lost packet: 1 + 2 + 4 s) without a false alarm, and a cut "
                    "mission is unknown within 20 s, its e-mail within 30 s "
                    "(docs/states.md). Probes that never sent a heartbeat (older ones, SNMP) "
                    "have only the silent_intervals rule")

    @model_validator(mode="after")
    def _consistent(self) -> StateSettings:
        if self.fail_k > self.window_n or self.recover_m > self.window_n:
            raise ValueError("fail_k and recover_m cannot exceed window_n")
        return self

    def policy(self) -> Policy:
        return Policy(fail_k=self.fail_k, window_n=self.window_n, recover_m=self.recover_m,
                      silent_intervals=self.silent_intervals,
                      probe_silent_s=self.probe_silent_s)


class RetentionSettings(_Section):
    raw_days: float = Field(30, ge=1, le=3_650,
                            description="raw results are kept this long; rollups and state "
                                        "intervals for good")
    rollup_1m_days: float = Field(2, ge=1, le=3_650,
                                  description="per-minute rollups are kept this long; hour "
                                              "and day rollups for good (docs/reports.md)")


class ReportSettings(_Section):
    """The uptime reports' counting policy (docs/reports.md), printed in every report."""

    unknown: Literal["exclude", "down"] = Field(
        "exclude", description="time in state unknown: left out of the uptime's "
                               "denominator, or counted as down")
    timezone: TimeZoneName = Field("UTC", description="zone of the period boundaries")


class AlertingSettings(_Section):
    """Alertmanager: where the collector posts confirmed access changes and silences, and
    what `unhindered-collector alertmanager-config` writes (docs/alerts.md)."""

    alertmanager_url: str | None = Field(
        None, description="e.g. http://127.0.0.1:9093; unset: no direct alerts")
    resend_s: float = Field(30, ge=1, le=3_600,
                            description="how often firing alerts are posted again")
    centre_contacts: tuple[str, ...] = Field((), description="the centre's e-mail addresses")
    smtp_smarthost: str = Field("localhost:25", description="HOST:PORT of the mail relay")
    smtp_from: str = Field("unhindered@localhost", description="sender of alert e-mails")
    smtp_require_tls: bool = Field(
        True, description="Alertmanager sends mail to the relay only over STARTTLS")
    watchdog_url: str | None = Field(None, description="dead-man's switch webhook URL")
    status_url: str | None = Field(None, description="the status page, linked from e-mails")
    runbook_url: str = Field("docs/runbook.md in the Unhindered sources",
                             description="where the e-mails say each alert is explained")
    language: Literal["ar", "zh", "en", "fr", "ru", "es"] = Field(
        "en", description="language of the e-mails")
    # Not 0: Alertmanager's inhibitor learns of a source alert (TargetDownFleetWide,
    # CollectorDown) asynchronously, so a mission alert arriving in the same batch can be
    # mailed before the inhibition that explains it applies (seen in CI with 0 s).
    group_wait_s: float = Field(5, ge=1, le=3_600,
                                description="seconds Alertmanager waits before a group's "
                                            "first e-mail, so inhibitions apply first")
    group_interval_s: float = Field(60, ge=1, le=86_400,
                                    description="seconds between e-mails about a group "
                                                "whose alerts changed")
    repeat_interval_s: float = Field(4 * 3_600, ge=60, le=30 * 86_400,
                                     description="seconds before an unchanged firing alert "
                                                 "is e-mailed again")


class CollectorConfig(_Section):
    inventory: Annotated[Path | None, ReadFile()] = Field(
        None, description="the mission inventory (docs/inventory.md); default: the shipped "
                          "one, the 193 Member States and 2 Observer States")
    checks_file: Annotated[Path | None, ReadFile()] = Field(
        None, description="the central check lists probes fetch (see docs/central-checks.md)")
    listen: ListenSettings = Field(ListenSettings(), description="the HTTP listener")
    tls: TlsSettings | None = Field(None, description="HTTPS on the listener (beside listen, "
                                                      "so --listen keeps it); unset: plain "
                                                      "HTTP")
    states: StateSettings = Field(StateSettings(), description="state hysteresis")
    retention: RetentionSettings = Field(RetentionSettings(),
                                         description="how long results are kept")
    report: ReportSettings = Field(ReportSettings(), description="uptime reports")
    database: DatabaseSettings = Field(DatabaseSettings(), description="where results live")
    ingest: IngestSettings = Field(IngestSettings(), description="what a batch may hold")
    limits: LimitsSettings = Field(LimitsSettings(),
                                   description="what a client may cost the collector")
    logging: LoggingSettings = Field(LoggingSettings(), description="log format and level")
    alerting: AlertingSettings = Field(AlertingSettings(),
                                       description="Alertmanager and alert e-mails")
    snmp: SnmpSettings = Field(SnmpSettings(), description="SNMP receiver and pollers "
                                                           "(docs/snmp-collector.md); off "
                                                           "unless set")
    control: ControlSettings = Field(ControlSettings(),
                                     description="the centre's control measurements of the "
                                                 "probes' targets (docs/control.md); off "
                                                 "unless enabled")

    def load_inventory(self) -> Inventory:
        return default_inventory() if self.inventory is None else load_inventory(self.inventory)


def load(path: Path, overrides: dict | None = None) -> CollectorConfig:
    """`overrides`: sections the command line replaces (--database, --listen)."""
    return load_model(path, CollectorConfig, overrides=overrides)
