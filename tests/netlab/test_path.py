"""Path recording in the lab (docs/path.md): a mission two routers away from its targets,
its uplink cut after the second hop. The recorder alone (`python -m probes.path`) finds
the path stopping at the right hop by each method; then a real probe records a baseline
and, when its check's failure is confirmed, the failing path, which reaches the collector
with the check's next result once the uplink is back, and is read from the API and
shown on the mission's status page beside the last good path."""

from __future__ import annotations

import json
import sqlite3
import time
from urllib.parse import urlencode

import pytest
import yaml

from collector.store.database import Store
from tests.support import wait_for
from tests.support.spine import COLLECTOR_PORT, PYTHON, Collector, Probe

pytestmark = pytest.mark.netlab

HOPS = 2
PORT = 80


def record(lab, mission, address: str, method: str, port: int | None = None) -> dict:
    argv = [PYTHON, "-m", "probes.path", "--address", address, "--method", method,
            "--max-hops", "8", "--wait", "0.5"]
    if port is not None:
        argv += ["--port", str(port)]
    done = lab.run(mission.name, argv, timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"] is None, result["error"]
    return result


def addresses(result: dict) -> list[str | None]:
    return [hop["address"] for hop in result["hops"]]


@pytest.fixture
def behind_two_routers(lab):
    mission = lab.add_mission("FRA", hops=HOPS)
    target = lab.add_target()
    lab.start_responders((PORT,))
    return mission, target


@pytest.mark.parametrize(("method", "port"), [("icmp", None), ("tcp", PORT), ("udp", 53)])
def test_the_path_stops_after_the_hop_where_the_uplink_is_cut(lab, behind_two_routers,
                                                              method, port):
    mission, target = behind_two_routers
    r1, r2 = mission.routers
    for address, routers in ((target.ipv4, [r1.ipv4, r2.ipv4]),
                             (target.ipv6, [r1.ipv6, r2.ipv6])):
        whole = record(lab, mission, address, method, port)
        # Each router answers from its own address, then the target itself.
        assert addresses(whole) == [*routers, address]
        assert whole["reached"] is True and whole["stopped_after_ttl"] == HOPS + 1
        assert all(hop["rtt_s"] > 0 for hop in whole["hops"])
        assert whole["packets_sent"] >= HOPS + 1 and whole["bytes_sent"] > 0

    lab.cut_after(mission, HOPS)
    for address, routers in ((target.ipv4, [r1.ipv4, r2.ipv4]),
                             (target.ipv6, [r1.ipv6, r2.ipv6])):
        cut = record(lab, mission, address, method, port)
        assert addresses(cut) == routers
        assert cut["reached"] is False and cut["stopped_after_ttl"] == HOPS
        # The silent TTLs past the cut were tried again, then given up.
        assert cut["packets_sent"] > cut["packets_received"]

    lab.restore_after(mission, HOPS)
    assert record(lab, mission, target.ipv4, method, port)["reached"] is True


def test_a_cut_after_the_first_hop_stops_the_path_there(lab, behind_two_routers):
    mission, target = behind_two_routers
    lab.cut_after(mission, 1)
    cut = record(lab, mission, target.ipv4, "tcp", PORT)
    assert addresses(cut) == [mission.routers[0].ipv4] and cut["reached"] is False


def _outbox_has_failure_path(outbox) -> bool:
    db = sqlite3.connect(outbox)
    try:
        return any('"trigger":"failure"' in body
                   for (body,) in db.execute("SELECT body FROM outbox"))
    finally:
        db.close()


def test_a_failing_check_brings_its_path_to_the_collector(lab, behind_two_routers, tmp_path):
    mission, target = behind_two_routers
    r1, r2 = mission.routers
    collector = Collector(lab, tmp_path)
    reader = Store(collector.database)
    try:
        reader.migrate()
        token = reader.add_reader("tests")
    finally:
        reader.close()
    collector.start()
    probe = Probe(lab, mission, tmp_path, collector, [{
        "id": "internet-tcp", "kind": "tcp", "target": target.ipv4, "port": PORT,
        "interval_s": 2, "timeout_s": 1, "confirm_interval_s": 1}])
    config = yaml.safe_load(probe.config_path.read_text())
    config["path"] = {"min_period_s": 60, "baseline_every_s": 3600, "max_hops": 8,
                      "wait_s": 0.5, "timeout_s": 10}
    probe.config_path.write_text(yaml.safe_dump(config))
    probe.start()

    def paths() -> dict:
        now = time.time()
        query = urlencode({"mission": "FRA", "check": "internet-tcp",
                           "from": int(now - 600), "to": int(now + 60)})
        status, _headers, body = lab.fetch(
            lab.centre.name, f"http://{lab.centre.ipv4}:{COLLECTOR_PORT}/api/v1/paths?"
            + query, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert status == 200, body
        return json.loads(body)

    # The first successful round brings a baseline: the whole way, the target answering.
    good = wait_for(lambda: paths()["last_good"], 30, "the baseline path")
    assert good["path"]["trigger"] == "baseline" and good["result_ok"] is True
    assert [h["address"] for h in good["path"]["hops"]] == [r1.ipv4, r2.ipv4, target.ipv4]
    assert good["path"]["reached"] is True and good["path"]["method"] == "tcp"
    assert good["path"]["port"] == PORT

    lab.cut_after(mission, HOPS)
    # Confirmed (two rounds, two confirmations), recorded, attached to the next round:
    # queued in the outbox while the way to the collector is cut.
    wait_for(lambda: _outbox_has_failure_path(probe.outbox_path), 40,
             "the failing path in the outbox")
    # The way to the centre comes back; the target stays out of reach, so the check stays
    # down and the mission page shows where its way stopped.
    lab.block(mission, target)
    lab.restore_after(mission, HOPS)

    def failure_path() -> dict | None:
        return next((item for item in paths()["items"]
                     if item["path"]["trigger"] == "failure"), None)

    failing = wait_for(failure_path, 30, "the failing path at the collector")
    assert failing["result_ok"] is False and failing["probe_id"] == probe.probe_id
    record_ = failing["path"]
    assert [h["address"] for h in record_["hops"]] == [r1.ipv4, r2.ipv4]
    assert record_["reached"] is False and record_["stopped_after_ttl"] == HOPS
    page = paths()
    assert page["last_good"]["path"]["started_at"] == good["path"]["started_at"]
    assert [item["path"]["started_at"] for item in page["items"]] == sorted(
        (item["path"]["started_at"] for item in page["items"]), reverse=True)

    status, body = collector.fetch("/status/FRA?lang=en")
    assert status == 200
    page_text = body.decode()
    section = page_text[page_text.index('id="paths-title"'):]
    section = section[:section.index("</section>")]
    assert "internet-tcp" in section and "Nothing answered after hop 2." in section
    assert "The target answered." in section  # the last good path, beside it
    for address in (r1.ipv4, r2.ipv4, target.ipv4):
        assert address in section
    probe.stop()
    collector.stop()
