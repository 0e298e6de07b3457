"""Central check lists: the real collector and probe processes on loopback; engineers
edit one file at the centre and the probe follows without a restart."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress

import pytest
import yaml

from collector.store.database import Store
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def listener():
    """A TCP port on loopback that accepts connections (a target for tcp checks)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with suppress(OSError):
                server.accept()[0].close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def tcp(check_id: str, port: int) -> dict:
    return {"id": check_id, "kind": "tcp", "target": "127.0.0.1", "port": port,
            "interval_s": 0.5, "timeout_s": 0.5}


def test_probe_follows_the_central_list_and_its_local_override(tmp_path, listener):
    checks_file = tmp_path / "checks.yaml"
    checks_file.write_text(yaml.safe_dump({
        "all": [tcp("everyone", listener)],
        "missions": {"FRA": [tcp("fra-only", listener), tcp("overridden", 9)]},
        "probes": {"ken-1": [tcp("not-for-fra", listener)]},
    }))
    database = f"sqlite:///{tmp_path / 'collector.sqlite'}"
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"checks_file": str(checks_file),
                                      "database": {"url": database},
                                      "listen": {"host": "127.0.0.1", "port": port}}))
    cli = [sys.executable, "-m", "collector.cli", "-c", str(config)]
    subprocess.run([*cli, "probes", "add", "--mission", "FRA", "--id", "fra-1",
                    "--token-file", str(tmp_path / "token")], check=True, capture_output=True)
    probe_config = tmp_path / "probe.yaml"
    probe_config.write_text(yaml.safe_dump({
        "probe_id": "fra-1", "mission": "FRA", "outbox": str(tmp_path / "outbox.sqlite"),
        "collector": {"urls": [f"http://127.0.0.1:{port}/"],
                      "token_file": str(tmp_path / "token"), "batch_max_age_s": 0.2},
        "checks": [tcp("overridden", listener)],  # the local version wins
        "central": {"poll_s": 1},
        "local": {"gateway": "none", "resolver": "none"},
    }))
    with open(tmp_path / "collector.log", "w") as log:
        collector = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT)
    with open(tmp_path / "probe.log", "w") as log:
        probe = subprocess.Popen([sys.executable, "-m", "probes", "run", "-c",
                                  str(probe_config)], stdout=log, stderr=subprocess.STDOUT)
    store = Store(database)

    def checks_seen(since: float = 0.0) -> dict[str, bool]:
        seen: dict[str, bool] = {}
        for r in store.results_of_probe("fra-1"):
            if r.started_at > since:
                seen[r.check_id] = seen.get(r.check_id, True) and r.ok
        return seen

    try:
        wait_for(lambda: len(checks_seen()) >= 3, 30, "results of the three checks")
        # Nothing meant for another probe; the local "overridden" (a listening port)
        # replaced the central one (port 9, where nothing listens).
        assert checks_seen() == {"everyone": True, "fra-only": True, "overridden": True}

        # The engineers add a check; the probe picks it up without a restart.
        data = yaml.safe_load(checks_file.read_text())
        data["all"].append(tcp("added-later", listener))
        checks_file.write_text(yaml.safe_dump(data))
        wait_for(lambda: "added-later" in checks_seen(), 30, "the added check's results")

        # The engineers remove it again: the probe stops running it and says so in its
        # batches, and the collector retires it, rather than letting it fall silent
        # (issue 12, case 7).
        data["all"] = [c for c in data["all"] if c["id"] != "added-later"]
        checks_file.write_text(yaml.safe_dump(data))

        def current(check: str) -> str | None:
            rows = store.intervals("FRA", check)
            return rows[-1].state if rows and rows[-1].ended_at is None else None

        wait_for(lambda: current("added-later") == "retired", 30, "the removed check retired")
        assert {c: current(c) for c in ("everyone", "fra-only", "overridden")} == dict.fromkeys(
            ("everyone", "fra-only", "overridden"), "up")

        # A broken edit is refused at the collector; the probe keeps its list.
        checks_file.write_text("all: [{id: broken, kind: tcp}]\n")
        time.sleep(3)
        since = time.time()
        wait_for(lambda: set(checks_seen(since)) >= {"everyone", "fra-only"}, 20,
                 "measuring to go on after the broken edit")
        assert probe.poll() is None and collector.poll() is None
    finally:
        for process in (probe, collector):
            process.send_signal(signal.SIGTERM)
        for process in (probe, collector):
            process.wait(15)
        store.close()
    assert "central checks file changed but is refused" in (tmp_path / "collector.log").read_text()
