"""The command lines as people use them: options before or after the command, --version,
--verbose, tables (and --json), ISO 8601 times in logs, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from collector import cli as collector_cli
from collector.config import CollectorConfig, RetentionSettings
from collector.core import Collector
from collector.store.database import Store
from collector.web.app import create_app
from probes import cli as probe_cli
from tests.integration.test_ingest import REGISTERED, post
from tests.integration.test_late_rounds import rounds_batch
from tests.support import wait_for
from tests.support.storage import registered_since
from tests.unit.test_measurement import batch
from unhindered.version import probe_user_agent

ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def closed_port():
    """A loopback port bound and not listening: connections to it are refused, and no
    other process can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def write_probe_config(tmp_path, port: int, name: str = "probe.yaml", probe_id="fra-1"):
    token = tmp_path / "credential"
    token.write_text("a-credential\n")
    token.chmod(0o600)
    path = tmp_path / name
    path.write_text(yaml.safe_dump({
        "probe_id": probe_id, "mission": "FRA", "outbox": str(tmp_path / f"{name}.outbox"),
        "collector": {"urls": [f"http://127.0.0.1:{port}"], "token_file": str(token)},
        "checks": [{"id": "closed", "kind": "tcp", "target": "127.0.0.1", "port": port,
                    "interval_s": 1}],
        "local": {"gateway": "none", "resolver": "none"},
    }))
    return path


def test_the_probes_config_goes_before_or_after_the_command(tmp_path, closed_port, capsys):
    path = write_probe_config(tmp_path, closed_port)
    assert probe_cli.main(["check-config", "-c", str(path)]) == 0
    after = capsys.readouterr().out
    assert probe_cli.main(["--config", str(path), "check-config"]) == 0
    assert capsys.readouterr().out == after
    assert "fra-1" in after
    # The same file twice is harmless; two different files are an error.
    assert probe_cli.main(["-c", str(path), "check-config", "-c", str(path)]) == 0
    other = write_probe_config(tmp_path, closed_port, "other.yaml", probe_id="fra-2")
    with pytest.raises(SystemExit) as refused:
        probe_cli.main(["-c", str(path), "check-config", "-c", str(other)])
    assert refused.value.code == 2
    assert "given twice with different values" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe_cli.main(["check-config"])
    assert "check-config -c FILE" in capsys.readouterr().err


def test_the_collectors_config_and_database_go_before_or_after_the_command(tmp_path, capsys):
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": "sqlite:///from-config.sqlite"}}))
    assert collector_cli.main(["probes", "add", "--mission", "FRA", "-c", str(config)]) == 0
    capsys.readouterr()
    listed = []
    for argv in (["probes", "list", "-c", str(config)], ["-c", str(config), "probes", "list"]):
        assert collector_cli.main(argv) == 0
        listed.append(capsys.readouterr().out)
    assert listed[0] == listed[1]
    assert "fra-1" in listed[0]
    other = tmp_path / "other.yaml"
    other.write_text("{}\n")
    with pytest.raises(SystemExit) as refused:
        collector_cli.main(["-c", str(config), "probes", "list", "-c", str(other)])
    assert refused.value.code == 2
    database = f"sqlite:///{tmp_path / 'from-config.sqlite'}"
    assert collector_cli.main(["probes", "list", "--database", database]) == 0
    assert capsys.readouterr().out == listed[0]
    with pytest.raises(SystemExit) as refused:
        collector_cli.main(["--database", database, "probes", "list", "--database",
                            f"sqlite:///{tmp_path / 'another.sqlite'}"])
    assert refused.value.code == 2
    assert "--database given twice" in capsys.readouterr().err


@pytest.mark.parametrize("module, prog", [("probes", "unhindered-probe"),
                                          ("collector.cli", "unhindered-collector")])
def test_version(module, prog):
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, check=True, timeout=60)
    assert done.stdout.strip() == (f"{prog} {metadata.version('unhindered')} "
                                   f"(Python {sys.version.split()[0]})")


def test_library_messages_only_with_verbose(tmp_path):
    database = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    command = [sys.executable, "-m", "collector.cli", "probes", "list", "--database", database]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0
    assert "alembic" not in quiet.stderr.lower()
    assert quiet.stderr.strip() == "no probes registered: add one with probes add"
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 0
    assert re.search(rf"^{ISO_MS} INFO alembic\.", verbose.stderr, re.MULTILINE), verbose.stderr
    # fontTools reports every font subset while the PDF renders (with a Unicode font).
    pdf = [sys.executable, "-m", "collector.cli", "report", "--year", "2026", "-o",
           str(tmp_path / "r.pdf"), "--database", database]
    quiet = subprocess.run(pdf, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0
    assert quiet.stderr.startswith("pdf report for 2026 (0 missions) written to "), quiet.stderr
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr


async def test_probes_list_shows_the_newest_report(any_store, capsys):
    token = any_store.add_probe("fra-1", "FRA")
    any_store.enroll_probe("ken-1", "KEN", valid_s=3600)
    registered_since(any_store, REGISTERED)
    config = CollectorConfig(retention=RetentionSettings(raw_days=3650))
    async with TestClient(TestServer(create_app(config, any_store))) as client:
        client.session.headers["User-Agent"] = probe_user_agent()
        before = datetime.now(UTC).timestamp()
        status, _ack = await post(client, {**batch(1, 2), "backlog": 7}, token)
        assert status == 200
    assert collector_cli.main(["probes", "list", "--database", any_store.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MISSION", "PROBE", "STATE", "LAST", "REPORT", "BACKLOG",
                                "VERSION"]
    fra, ken = lines[1].split(), lines[2].split()
    assert fra[:3] == ["FRA", "fra-1", "active"]
    assert re.fullmatch(ISO_MS, fra[3])
    assert fra[4:] == ["7", metadata.version("unhindered")]
    assert ken == ["KEN", "ken-1", "enrolling", "never", "-", "-"]
    # Aligned: text starts where its header does, numbers end where theirs does.
    for word in ("STATE", "VERSION"):
        column = lines[0].index(word)
        assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines)
    end = lines[0].index("BACKLOG") + len("BACKLOG")
    assert all(line[end - 1] != " " and line[end:end + 2] == "  " for line in lines)
    assert collector_cli.main(["probes", "list", "--json", "--database", any_store.url]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["backlog"] == 7 and rows[1]["last_report"] is None
    reported = datetime.fromisoformat(rows[0]["last_report"]).timestamp()
    assert before <= reported <= datetime.now(UTC).timestamp()


def test_readers_list_is_a_table(tmp_path, capsys):
    database = f"sqlite:///{tmp_path / 'c.sqlite'}"
    for name in ("grafana", "reports"):
        assert collector_cli.main(["readers", "add", "--name", name, "--database", database]) == 0
    assert collector_cli.main(["readers", "revoke", "reports", "--database", database]) == 0
    capsys.readouterr()
    assert collector_cli.main(["readers", "list", "--database", database]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "CREATED", "REVOKED"]
    assert re.fullmatch(rf"grafana  active   {ISO_MS}  -", lines[1])
    assert re.fullmatch(rf"reports  revoked  {ISO_MS}  {ISO_MS}", lines[2])


def test_once_prints_a_table_or_json_lines(tmp_path, closed_port, capsys):
    with socket.create_server(("127.0.0.1", 0)) as listening:
        path = write_probe_config(tmp_path, closed_port)
        config = yaml.safe_load(path.read_text())
        config["checks"].append({"id": "open", "kind": "tcp", "target": "127.0.0.1",
                                 "port": listening.getsockname()[1]})
        path.write_text(yaml.safe_dump(config))
        assert probe_cli.main(["once", "-c", str(path)]) == 1  # a check failed
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["CHECK", "KIND", "TARGET", "OK", "REASON", "RTT", "LOSS",
                                    "TIME"]
        closed, opened = lines[1], lines[2]
        assert re.fullmatch(rf"closed +tcp +127\.0\.0\.1 +NO +refused: .+ +- +- +{ISO_MS}",
                            closed)
        assert re.fullmatch(rf"open +tcp +127\.0\.0\.1 +yes +- +\d+\.\d ms +- +{ISO_MS}",
                            opened)
        assert probe_cli.main(["once", "--json", "-c", str(path)]) == 1
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["check_id"], r["ok"], r["reason"]) for r in results] == [
        ("closed", False, "refused"), ("open", True, None)]


async def test_a_state_change_logs_its_time_in_iso_8601(tmp_path, caplog):
    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    collector = Collector(CollectorConfig(retention=RetentionSettings(raw_days=3650)), store)
    await collector.start()
    try:
        await collector.store_results(rounds_batch([(0, True), (60, True)]))
        with caplog.at_level("INFO", logger="collector"):  # a live change: up -> down
            await collector.store_results(rounds_batch(
                [(120, False), (180, False), (240, False)], first_seq=3))
    finally:
        await collector.stop()
        store.close()
    changes = [r.getMessage() for r in caplog.records if " since " in r.getMessage()]
    assert changes, caplog.text
    assert any(" is down since " in message for message in changes), changes
    for message in changes:
        assert re.search(rf" since {ISO_MS}: ", message), message


def test_a_probe_stopped_with_sigterm_stops_cleanly(tmp_path, closed_port):
    """A round waiting between confirmation rounds when SIGTERM comes: the probe stops
    without an error or a traceback, says so once, and exits 0."""
    path = write_probe_config(tmp_path, closed_port)
    log = tmp_path / "probe.log"
    with log.open("w") as out:
        probe = subprocess.Popen([sys.executable, "-m", "probes", "run", "-c", str(path)],
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        # The first round failed (refused) and is stored: its confirmation rounds follow,
        # 2 s apart, so the probe is in the middle of one when the signal comes.
        def stored() -> bool:
            db = sqlite3.connect(tmp_path / "probe.yaml.outbox")
            try:
                return db.execute("SELECT count(*) FROM outbox").fetchone()[0] > 0
            finally:
                db.close()

        wait_for(stored, 20, "the probe's first round")
        probe.send_signal(signal.SIGTERM)
        assert probe.wait(15) == 0
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    text = log.read_text()
    assert "Traceback" not in text and "CancelledError" not in text, text
    assert " ERROR " not in text, text
    stopped = [line for line in text.splitlines() if " stopped" in line]
    assert len(stopped) == 1, text
    assert re.fullmatch(rf"{ISO_MS} INFO probes\.app: probe fra-1 stopped; .*", stopped[0])
