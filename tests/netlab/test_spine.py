"""The spine, end to end in the network lab: a probe in a mission namespace measures lab
targets and pushes to a collector in the centre namespace; links are cut, the collector
is stopped, the probe is killed, and nothing acknowledged is lost or duplicated."""

from __future__ import annotations

import random
import time

import pytest

from tests.support import wait_for
from tests.support.spine import (
    Collector,
    Probe,
    assert_exactly_once,
    assert_measurement_order,
)

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

OUTAGE_S = 60


def icmp_check(target, **extra) -> dict:
    return {
        "id": "internet-icmp",
        "kind": "icmp",
        "target": target.ipv4,
        "interval_s": 2,
        "timeout_s": 1,
        "count": 3,
        "packet_interval_s": 0.1,
        **extra,
    }


def tcp_check(target) -> dict:
    return {
        "id": "internet-tcp",
        "kind": "tcp",
        "target": target.ipv4,
        "port": 80,
        "interval_s": 2,
        "timeout_s": 1,
    }


@pytest.fixture
def world(lab, tmp_path):
    """One mission, one target 20 ms away, a running collector."""
    mission = lab.add_mission("FRA")
    target = lab.add_target(delay_s=0.020)
    lab.start_responders()
    collector = Collector(lab, tmp_path)
    collector.start()
    return mission, target, collector


def test_probe_measures_a_20ms_target_and_the_collector_exports_it(world, tmp_path, lab):
    mission, target, collector = world
    probe = Probe(
        lab,
        mission,
        tmp_path,
        collector,
        [icmp_check(target, count=10, packet_interval_s=0.05), tcp_check(target)],
    )
    probe.start()
    # Each check's first round may reach /metrics in a different render: wait for both.
    wait_for(
        lambda: all(collector.check_value("unhindered_check_up", "FRA", check) == 1
                    for check in ("internet-icmp", "internet-tcp")),
        30,
        "both checks up",
    )
    median = collector.check_value("unhindered_check_rtt_median_seconds", "FRA",
                                   "internet-icmp")
    print(f"median RTT {median * 1000:.3f} ms for an injected 20 ms")
    assert abs(median - 0.020) < 0.001, f"median RTT {median * 1000:.3f} ms, injected 20 ms"
    loss = collector.check_value("unhindered_check_loss_ratio", "FRA", "internet-icmp")
    assert loss == 0
    probe.stop()


def test_link_cut_backfills_every_result_with_its_measurement_time(world, tmp_path, lab):
    mission, target, collector = world
    probe = Probe(lab, mission, tmp_path, collector, [icmp_check(target), tcp_check(target)])
    probe.start()
    wait_for(
        lambda: collector.check_value("unhindered_check_up", "FRA", "internet-tcp"),
        30,
        "the check to be up",
    )

    lab.cut(mission)
    cut_at = time.time()
    time.sleep(OUTAGE_S)
    backlog = len(probe.outbox().seqs)
    lab.restore(mission)
    restored_at = time.time()
    assert backlog >= OUTAGE_S / 2, f"only {backlog} results queued during the cut"

    wait_for(probe.drained, 60, "the probe's outbox to drain after the cut")
    wait_for(lambda: collector.check_value("unhindered_check_up", "FRA", "internet-tcp"), 10,
             "the check to be up again")
    probe.stop()
    stored = assert_exactly_once(collector, probe)
    assert_measurement_order(stored)

    # Rounds that started inside the cut failed, for the right reason, and are stored at
    # their measurement time although they arrived after the link came back.
    during = [r for r in stored if cut_at + 1 < r.started_at < restored_at - 2]
    assert len(during) >= 0.8 * 2 * OUTAGE_S / 2
    assert all(not r.ok and r.reason in ("timeout", "unreachable") for r in during)
    assert all(r.received_at >= restored_at for r in during)
    assert min(r.started_at for r in during) < restored_at - OUTAGE_S + 5


def test_collector_outage_loses_and_duplicates_nothing(world, tmp_path, lab):
    mission, target, collector = world
    probe = Probe(lab, mission, tmp_path, collector, [icmp_check(target), tcp_check(target)])
    probe.start()
    wait_for(lambda: collector.results(probe.probe_id), 30, "the first results")

    collector.stop()
    stopped_at = time.time()
    time.sleep(OUTAGE_S)
    collector.start()
    wait_for(probe.drained, 60, "the probe's outbox to drain after the restart")
    probe.stop()

    stored = assert_exactly_once(collector, probe)
    assert_measurement_order(stored)
    during = [r for r in stored if stopped_at + 1 < r.started_at < stopped_at + OUTAGE_S - 1]
    assert len(during) >= 0.8 * 2 * OUTAGE_S / 2
    assert all(r.ok for r in during), "the targets stayed reachable; only the collector was down"
    # The restarted collector rebuilt its state and counters from the store.
    # (/metrics is rendered ahead and may be a couple of seconds behind the store.)
    expected = len([r for r in stored if r.check_id == "internet-icmp"])
    wait_for(lambda: collector.check_value("unhindered_check_rounds_total", "FRA",
                                           "internet-icmp") == expected,
             10, f"the restarted collector to count {expected} rounds")


def test_kill_9_while_measuring_and_reporting_loses_nothing(world, tmp_path, lab):
    mission, target, collector = world
    checks = [
        icmp_check(target, interval_s=1, count=2, packet_interval_s=0.05),
        {**tcp_check(target), "interval_s": 1},
    ]
    probe = Probe(lab, mission, tmp_path, collector, checks, batch_max_size=3, batch_max_age_s=0.1)
    rng = random.Random(2)
    kills_with_backlog = 0
    for _ in range(20):
        probe.start()
        time.sleep(rng.uniform(1.5, 3.0))
        probe.kill9()
        view = probe.outbox()
        # Contiguous, and starting right after what the collector acknowledged.
        if view.seqs:
            kills_with_backlog += 1
            assert view.seqs == list(range(view.seqs[0], view.last_seq + 1))
            assert view.seqs[0] <= view.acked_through + 1
        acked = [r.seq for r in collector.results(probe.probe_id) if r.seq <= view.acked_through]
        assert acked == list(range(1, view.acked_through + 1))
    before = probe.outbox().last_seq
    probe.start()
    wait_for(lambda: probe.outbox().last_seq > before + 2 and probe.drained(), 30,
             "new results, then the outbox to drain, after the last kill")
    probe.stop()
    stored = assert_exactly_once(collector, probe)
    assert_measurement_order(stored)
    assert len(stored) >= 20, "the probe hardly measured between kills"
    print(f"{len(stored)} results over 21 runs; {kills_with_backlog} of 20 kills left a backlog")
