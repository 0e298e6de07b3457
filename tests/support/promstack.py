"""Real Prometheus and Alertmanager for tests and benchmarks.

`prometheus(...)` and `alertmanager(...)` are context managers that start the Debian
programs with a temporary data directory on a free port, wait until they answer
`/-/ready`, and always stop them and delete the directory, even when the body fails.

They run on the host's loopback by default, or inside a lab namespace
(`Place.in_lab(lab, lab.centre.name)`), where they can scrape a collector started by
`tests/support/spine.py`; requests to them then go through `lab.fetch`, which enters the
namespace first. Either way they listen on 127.0.0.1 only.

    with alertmanager(config_yaml) as am, prometheus(
            [collector_address], rule_files=[...], alertmanager_url=am.url) as prom:
        prom.wait_for_targets_up()
        prom.query('unhindered_mission_access_up')
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import free_port

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager binary
READY_TIMEOUT_S = 60.0  # generous: two cores shared by several test runs
STOP_GRACE_S = 10.0


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Place:
    """Where a program runs and how requests reach it: the host, or a lab namespace."""

    lab: Any = None  # tests.support.lab.netns.Lab
    ns: str | None = None

    @classmethod
    def in_lab(cls, lab: Any, ns: str) -> Place:
        return cls(lab=lab, ns=ns)

    def popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            if self.lab is not None:
                return self.lab.popen(self.ns, list(argv), stdout=out, stderr=subprocess.STDOUT)
            return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def fetch(self, url: str, *, method: str = "GET", data: bytes | None = None,
              headers: Mapping[str, str] | None = None, timeout: float = 10.0
              ) -> tuple[int, bytes]:
        if self.lab is not None:
            status, _headers, body = self.lab.fetch(self.ns, url, method=method, data=data,
                                                     headers=headers, timeout=timeout)
            return status, body
        # No proxy: an http_proxy variable must not send loopback requests elsewhere.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(url, data=data, method=method,
                                         headers=dict(headers or {}))
        try:
            with opener.open(request, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()


HOST = Place()


class _Program:
    """A started program: its process, directory, URL and JSON API access."""

    name = ""

    def __init__(self, place: Place, workdir: Path, port: int) -> None:
        self.place = place
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def request(self, path: str, *, method: str = "GET", body: Any = None,
                params: Mapping[str, str | Sequence[str]] | None = None,
                timeout: float = 10.0) -> Any:
        """The decoded JSON answer of an API call; StackError on an HTTP error."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        status, raw = self.place.fetch(url, method=method, data=data, headers=headers,
                                       timeout=timeout)
        if status >= 300:
            raise StackError(f"{self.name} {method} {path} answered {status}: {raw[:500]!r}")
        return json.loads(raw) if raw.strip() else None

    def start(self, argv: Sequence[str]) -> None:
        self.process = self.place.popen(argv, self.log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(f"{self.name} exited with {self.process.returncode}:\n"
                                 f"{self.log_tail()}")
            with contextlib.suppress(OSError, TimeoutError):
                if self.place.fetch(self.url + "/-/ready", timeout=2)[0] == 200:
                    return
            time.sleep(0.1)
        raise StackError(f"{self.name} not ready after {READY_TIMEOUT_S:.0f} s:\n"
                         f"{self.log_tail()}")

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class Prometheus(_Program):
    name = "prometheus"

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector (or scalar/string as a one-item list) of a PromQL query."""
        params = {"query": expr, **({"time": str(at)} if at is not None else {})}
        answer = self.request("/api/v1/query", params=params)
        result = answer["data"]["result"]
        return result if answer["data"]["resultType"] in ("vector", "matrix") else [result]

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[dict[str, Any]]:
        answer = self.request("/api/v1/query_range", params={
            "query": expr, "start": str(start), "end": str(end), "step": str(step)})
        return answer["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now: each with labels, annotations, state."""
        return self.request("/api/v1/alerts")["data"]["alerts"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.request("/api/v1/rules")["data"]["groups"]

    def targets(self) -> list[dict[str, Any]]:
        return self.request("/api/v1/targets")["data"]["activeTargets"]

    def wait_for_targets_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.targets()
            if targets and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.5)
        raise StackError(f"scrape targets not up after {timeout:.0f} s: "
                         + "; ".join(f"{t['scrapeUrl']} {t['health']} {t['lastError']}"
                                     for t in targets))


class Alertmanager(_Program):
    name = "alertmanager"

    def alerts(self, *filters: str, active: bool = True) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds (API v2), optionally filtered by matchers like
        'mission="FRA"'."""
        params: dict[str, Any] = {"active": str(active).lower()}
        if filters:
            params["filter"] = list(filters)
        return self.request("/api/v2/alerts", params=params)

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.request("/api/v2/alerts", method="POST", body=alerts)

    def silences(self) -> list[dict[str, Any]]:
        return self.request("/api/v2/silences")

    def status(self) -> dict[str, Any]:
        return self.request("/api/v2/status")


def prometheus_config(targets: Sequence[str], rule_files: Sequence[Path | str] = (),
                      alertmanager_url: str | None = None,
                      scrape_configs: Sequence[Mapping[str, Any]] = (),
                      interval: str = "1s") -> dict[str, Any]:
    """A Prometheus config scraping `targets` (host:port) as job "unhindered", plus any
    further scrape configs, evaluating `rule_files`, sending alerts to `alertmanager_url`."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [
            *([{"job_name": "unhindered", "static_configs": [{"targets": list(targets)}]}]
              if targets else []),
            *scrape_configs,
        ],
    }
    if alertmanager_url:
        parsed = urllib.parse.urlsplit(alertmanager_url)
        config["alerting"] = {"alertmanagers": [{
            "scheme": parsed.scheme or "http",
            "static_configs": [{"targets": [parsed.netloc]}],
        }]}
    return config


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def prometheus(targets: Sequence[str] = (), rule_files: Sequence[Path | str] = (),
               alertmanager_url: str | None = None, *, place: Place = HOST,
               scrape_configs: Sequence[Mapping[str, Any]] = (), interval: str = "1s",
               extra_args: Sequence[str] = ()) -> Iterator[Prometheus]:
    """A running Prometheus: 1 s scrape and evaluation intervals by default, alerts resent
    to Alertmanager every second (the default minute would hide resolutions)."""
    with _workdir("uh-prometheus-") as workdir:
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(
            targets, rule_files, alertmanager_url, scrape_configs, interval)))
        prom = Prometheus(place, workdir, free_port())
        try:
            prom.start([
                PROMETHEUS, f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom.port}",
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
                *extra_args,
            ])
            yield prom
        finally:
            prom.stop()


@contextlib.contextmanager
def alertmanager(config: str | Mapping[str, Any], *, place: Place = HOST,
                 extra_args: Sequence[str] = ()) -> Iterator[Alertmanager]:
    """A running Alertmanager with `config` (YAML text or a mapping); clustering off."""
    with _workdir("uh-alertmanager-") as workdir:
        path = workdir / "alertmanager.yml"
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(dict(config)))
        am = Alertmanager(place, workdir, free_port())
        try:
            am.start([
                ALERTMANAGER, f"--config.file={path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{am.port}",
                "--cluster.listen-address=",  # no gossip port, no peers
                "--log.level=warn",
                *extra_args,
            ])
            yield am
        finally:
            am.stop()
