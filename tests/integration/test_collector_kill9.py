"""Fault drill (issue 12): the collector killed with -9 under load, on SQLite and on
PostgreSQL. The real `unhindered-collector serve` on a loopback port; several simulated
probes push batches at once, as probes/reporters/http_push.py does (gzip, bearer token,
the oldest unacknowledged results again until acknowledged); the collector is killed in
the middle and started again, as systemd's Restart= would. Every acknowledged result must
be stored, exactly once, and /healthz must answer within a second after the restart while
the probes catch up."""

from __future__ import annotations

import gzip
import http.client
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from collector.store.database import Store
from collector.store.schema import results
from tests.support import free_port, wait_for
from tests.support.storage import postgres_schema, registered_since
from tests.unit.test_measurement import icmp
from unhindered.measurement import (
    ACK_HEADER,
    ACK_WITH_REJECTED,
    Ack,
    IcmpMeasurement,
    encode_batch,
    encode_result,
    with_seq,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PROBES = 4
RESULTS_PER_PROBE = 2_000
BATCH_SIZE = 100  # 20 batches a probe, 80 in all
CHECKS = 5
KILL_AT = 0.3  # share of all results acknowledged when the collector is killed
RETRY_S = 0.05  # a probe's pause after a failed push (backoff_initial_s is 1 s)


@dataclass
class SimulatedProbe:
    """A probe's outbox (in memory) and push loop; records every answer."""

    probe_id: str
    token: str
    port: int
    rows: list[tuple[int, str]]  # (seq, the result as the outbox stores it)
    outbox_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    acked_through: int = 0
    acknowledged_stored: int = 0  # `stored` summed over the acks received
    acknowledged_duplicates: int = 0
    failed: list[str] = field(default_factory=list)  # pushes without an ack, and why

    @property
    def done(self) -> bool:
        return self.acked_through >= len(self.rows)

    def run(self, stop: threading.Event) -> None:
        while not self.done and not stop.is_set():
            rows = self.rows[self.acked_through:self.acked_through + BATCH_SIZE]
            try:
                ack = self._push(rows)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ack, why = None, f"{type(exc).__name__}: {exc}"
            else:
                why = "no ack"
            if isinstance(ack, Ack):
                # As the probe does: never beyond what was sent.
                self.acked_through = min(ack.acked_through, rows[-1][0])
                self.acknowledged_stored += ack.stored
                self.acknowledged_duplicates += ack.duplicates
                assert not ack.rejected, ack.rejected
            else:
                self.failed.append(ack if isinstance(ack, str) else why)
                time.sleep(RETRY_S)

    def _push(self, rows: list[tuple[int, str]]) -> Ack | str:
        backlog = len(self.rows) - rows[-1][0]
        text = encode_batch(self.probe_id, self.probe_id[:3].upper(), self.outbox_id,
                            backlog, [body for _, body in rows])
        body = gzip.compress(text.encode(), compresslevel=5)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request("POST", "/api/v1/results", body, {
                "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                "Content-Encoding": "gzip", ACK_HEADER: ACK_WITH_REJECTED})
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        if answer.status != 200:
            return f"{answer.status}: {data[:200]!r}"
        return Ack.model_validate_json(data)


def outbox_rows(probe_id: str, since: float) -> list[tuple[int, str]]:
    """RESULTS_PER_PROBE rounds of CHECKS checks, one a second each, encoded as the
    probe's outbox stores them."""
    rows = []
    for seq in range(1, RESULTS_PER_PROBE + 1):
        at = datetime.fromtimestamp(since + (seq - 1) // CHECKS, UTC)
        m = IcmpMeasurement.model_validate(icmp(
            probe_id=probe_id, mission=probe_id[:3].upper(),
            check_id=f"internet-icmp-{seq % CHECKS}", started_at=at.isoformat(),
            interval_s=1.0))
        rows.append((seq, with_seq(seq, encode_result(m))))
    return rows


@dataclass
class Served:
    port: int
    config: Path
    logs: Path
    process: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        """Starts the collector and waits until it answers; tries again (as systemd's
        Restart= would) if it stopped, e.g. PostgreSQL had not yet ended the killed
        one's session and its writer lock."""
        for _attempt in range(3):
            self.starts += 1
            with open(self.logs / f"collector-{self.starts}.log", "w") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "collector.cli", "-c", str(self.config), "serve"],
                    stdout=log, stderr=subprocess.STDOUT)
            wait_for(lambda: self.process.poll() is not None or healthz(self.port)[0] == 200,
                     30, "the collector to serve /healthz")
            if self.process.poll() is None:
                return
            time.sleep(1)
        pytest.fail(f"the collector did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.logs / f"collector-{self.starts}.log").read_text()[-3000:]


def healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        answer.read()
    finally:
        connection.close()
    return answer.status, time.monotonic() - started


def count(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(results)).scalar()


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'collector.sqlite'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_kill_9_under_load_loses_no_acknowledged_result_and_stores_none_twice(
        kind, tmp_path):
    with database(kind, tmp_path) as url:
        store = Store(url)
        store.migrate()
        tokens = {f"{m}-1": store.add_probe(f"{m}-1", m.upper())
                  for m in ("fra", "ken", "bra", "chn")[:PROBES]}
        now = time.time()
        registered_since(store, now - 7_200)
        port = free_port()
        config = tmp_path / "collector.yaml"
        config.write_text(yaml.safe_dump({"database": {"url": url},
                                          "listen": {"host": "127.0.0.1", "port": port}}))
        served = Served(port, config, tmp_path)
        probes = [SimulatedProbe(probe_id, token, port, outbox_rows(probe_id, now - 3_600))
                  for probe_id, token in tokens.items()]
        total = PROBES * RESULTS_PER_PROBE
        stop = threading.Event()
        threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in probes]
        try:
            served.start()
            for thread in threads:
                thread.start()
            wait_for(lambda: sum(p.acked_through for p in probes) >= KILL_AT * total, 60,
                     "the first third acknowledged", interval=0.005)
            # The moment that matters: a batch committed, its ack not yet received. The
            # collector is frozen (SIGSTOP) when the database holds more than the probes
            # have had acknowledged; acks already on their way land meanwhile, and if the
            # store is still ahead, that ack is lost for sure by the kill. Else go on.
            deadline = time.monotonic() + 30
            while True:
                assert time.monotonic() < deadline, "no batch stored and not acknowledged"
                if count(store) > sum(p.acked_through for p in probes):
                    served.process.send_signal(signal.SIGSTOP)
                    time.sleep(0.3)
                    if count(store) > sum(p.acked_through for p in probes):
                        break
                    served.process.send_signal(signal.SIGCONT)
                time.sleep(0.001)
            served.process.send_signal(signal.SIGKILL)
            served.process.wait(10)
            acked_at_kill = {p.probe_id: p.acked_through for p in probes}
            assert sum(acked_at_kill.values()) < total, "the load was over before the kill"

            served.start()
            health: list[tuple[int, float]] = []  # /healthz while the probes catch up
            while not all(p.done for p in probes):
                health.append(healthz(port))
                assert time.time() - now < 100, "the probes did not catch up"
                time.sleep(0.02)
            for thread in threads:
                thread.join(30)
        finally:
            stop.set()
            if served.process is not None and served.process.poll() is None:
                served.process.send_signal(signal.SIGTERM)
                assert served.process.wait(15) == 0, served.log_tail()

        # Every push during the kill failed and was sent again; none was refused.
        failures = [why for p in probes for why in p.failed]
        assert failures, "no push was cut by the kill"
        assert not [why for why in failures if why[:3].isdigit()], failures[:5]
        # /healthz after the restart, while the probes caught up.
        # How long the catch-up lasts depends on where in the load the kill fell: every
        # answer while it lasted must be a fast 200, however many there were.
        assert {status for status, _ in health} == {200}, health
        worst = max(took for _, took in health)
        assert worst < 1.0, f"/healthz took {worst:.2f} s after the restart"

        with store.engine.connect() as conn:
            stored = {(probe_id, seq): n for probe_id, seq, n in conn.execute(
                select(results.c.probe_id, results.c.seq, func.count()).group_by(
                    results.c.probe_id, results.c.outbox_id, results.c.seq))}
        store.close()
        twice = {key: n for key, n in stored.items() if n != 1}
        assert not twice, f"stored more than once: {list(twice.items())[:10]}"
        for p in probes:
            assert p.acked_through == RESULTS_PER_PROBE
            seqs = {seq for probe_id, seq in stored if probe_id == p.probe_id}
            lost = sorted(set(range(1, acked_at_kill[p.probe_id] + 1)) - seqs)
            assert not lost, f"{p.probe_id}: acknowledged before the kill, lost: {lost[:10]}"
            assert seqs == set(range(1, RESULTS_PER_PROBE + 1)), p.probe_id
        assert len(stored) == total
        # The batch whose ack the kill took was stored all the same: sent again, the
        # restarted collector counted it as duplicates, and stored nothing twice.
        acknowledged_stored = sum(p.acknowledged_stored for p in probes)
        duplicates = sum(p.acknowledged_duplicates for p in probes)
        assert duplicates > 0, "the kill came before the commit: no ack was lost"
        assert acknowledged_stored < total <= acknowledged_stored + duplicates
