"""Running the real collector and probes as processes inside the lab's namespaces."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from collector.store.database import Store
from tests.support import wait_for

PYTHON = sys.executable
COLLECTOR_PORT = 9640  # inside the lab's own centre namespace: no clash with the host


class Collector:
    def __init__(self, lab, workdir: Path, config: dict | None = None) -> None:
        self.lab = lab
        self.workdir = workdir
        self.database = f"sqlite:///{workdir / 'collector.sqlite'}"
        # An optional collector config (a mapping written as YAML), e.g. `alerting:`.
        self.config_args: list[str] = []
        if config is not None:
            path = workdir / "collector.yaml"
            path.write_text(yaml.safe_dump(config))
            self.config_args = ["-c", str(path)]
        self.url = f"http://{lab.centre.ipv4}:{COLLECTOR_PORT}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def _cli(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "collector.cli", *self.config_args, "--database", self.database,
                *args]

    def start(self) -> None:
        self.starts += 1
        log = (self.workdir / f"collector-{self.starts}.log").open("w")
        self.process = self.lab.popen(
            self.lab.centre.name,
            self._cli("serve", "--listen", f"{self.lab.centre.ipv4}:{COLLECTOR_PORT}"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.fetch("/healthz")[0] == 200, 30, "the collector to answer")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)

    def register(self, mission: str, probe_id: str) -> Path:
        token_file = self.workdir / f"{probe_id}.token"
        subprocess.run(
            self._cli(
                "probes",
                "add",
                "--mission",
                mission,
                "--id",
                probe_id,
                "--token-file",
                str(token_file),
            ),
            check=True,
            capture_output=True,
        )
        return token_file

    def fetch(self, path: str) -> tuple[int, bytes]:
        status, _headers, body = self.lab.fetch(self.lab.centre.name, self.url + path, timeout=5)
        return status, body

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        """Every sample, keyed by (name, labels)."""
        status, body = self.fetch("/metrics")
        assert status == 200
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    def check_value(self, name: str, mission: str, check: str) -> float | None:
        return self.metrics().get((name, frozenset({("mission", mission), ("check", check)})))

    def results(self, probe_id: str) -> list:
        store = Store(self.database)
        try:
            return store.results_of_probe(probe_id)
        finally:
            store.close()


@dataclass
class OutboxView:
    seqs: list[int]
    last_seq: int
    acked_through: int


class Probe:
    def __init__(
        self,
        lab,
        mission,
        workdir: Path,
        collector: Collector,
        checks: list[dict],
        local: dict | None = None,
        metrics: str | None = None,
        snmp: dict | None = None,
        **collector_settings,
    ) -> None:
        self.lab = lab
        self.mission = mission
        self.probe_id = f"{mission.code.lower()}-1"
        self.workdir = workdir
        self.outbox_path = workdir / f"{self.probe_id}-outbox.sqlite"
        token_file = collector.register(mission.code, self.probe_id)
        self.config_path = workdir / f"{self.probe_id}.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "probe_id": self.probe_id,
                    "mission": mission.code,
                    "outbox": str(self.outbox_path),
                    "collector": {
                        "urls": [collector.url],
                        "token_file": str(token_file),
                        "batch_max_age_s": 0.5,
                        "backoff_initial_s": 0.5,
                        "backoff_max_s": 4,
                        "timeout_s": 3,
                        **collector_settings,
                    },
                    "checks": checks,
                    # Always explicit: "auto" would read the host's resolver, outside the lab.
                    "local": local or {"gateway": "none", "resolver": "none"},
                    **({"metrics": {"listen": metrics}} if metrics else {}),
                    **({"snmp": snmp} if snmp else {}),
                    "logging": {"level": "DEBUG"},
                }
            )
        )
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.workdir / f"{self.probe_id}-{self.starts}.log").open("w")
        self.process = self.lab.popen(
            self.mission.name,
            [PYTHON, "-m", "probes", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(15) == 0

    def outbox(self) -> OutboxView:
        db = sqlite3.connect(self.outbox_path)
        try:
            seqs = [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
            acked = db.execute("SELECT value FROM meta WHERE key='acked_through'").fetchone()
        finally:
            db.close()
        return OutboxView(seqs, row[0] if row else 0, int(acked[0]) if acked else 0)

    def drained(self) -> bool:
        view = self.outbox()
        return view.last_seq > 0 and not view.seqs


def assert_exactly_once(collector: Collector, probe: Probe) -> list:
    """Every seq the probe ever assigned is stored once at the collector, none missing,
    but for the newest few that a stopped probe still holds in its outbox: a round can end
    between the outbox draining and the probe stopping; it is queued, not lost."""
    view = probe.outbox()
    stored = collector.results(probe.probe_id)
    assert len({r.outbox_id for r in stored}) == 1
    seqs = [r.seq for r in stored]
    assert len(seqs) == len(set(seqs)), "a result is stored twice"
    waiting = set(view.seqs) - set(seqs)
    missing = sorted(set(range(1, view.last_seq + 1)) - set(seqs) - waiting)
    assert not missing, f"results lost: seqs {missing[:20]} ({len(missing)} in all)"
    assert len(waiting) <= 4 and all(s > max(seqs) for s in waiting), \
        f"results the probe never sent: seqs {sorted(waiting)[:20]}"
    assert seqs == list(range(1, max(seqs) + 1))
    return stored


def assert_measurement_order(stored: list) -> None:
    """Per check, seq order is measurement-time order: the probe's clock, not arrival."""
    by_check: dict[str, list] = {}
    for row in stored:
        by_check.setdefault(row.check_id, []).append(row)
    for rows in by_check.values():
        times = [r.started_at for r in sorted(rows, key=lambda r: r.seq)]
        assert times == sorted(times)


def measure_once(lab, mission, tmp_path, checks: list[dict], **settings) -> dict[str, dict]:
    """Runs `unhindered-probe once` in the mission's namespace; results by check id."""
    config = tmp_path / "once.yaml"
    config.write_text(yaml.safe_dump({
        "probe_id": "once", "mission": mission.code, "outbox": str(tmp_path / "unused.sqlite"),
        "collector": {"urls": ["http://127.0.0.1:1/"], "token": "unused"},
        "checks": checks,
        **settings,
    }))
    done = lab.run(mission.name, [PYTHON, "-m", "probes", "once", "--json", "-c", str(config)])
    results = {r["check_id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(results) == {c["id"] for c in checks}, done.stderr
    return results
