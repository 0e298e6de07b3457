"""What the centre measures (collector/control/plan.py): the fleet's checks reduced to what
the centre can reproduce, deduplicated across missions, bounded; and when (the runner's
failure trigger, debounced per target)."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import CollectorRegistry

from collector.control.plan import FleetCheck, Planner, build, control_key
from collector.control.runner import ControlRunner
from collector.control.settings import ControlSettings
from unhindered.checks import DnsCheck, HttpCheck

URL = "https://documents.example.org/ok"
OPEN = ControlSettings(enabled=True, probe_checks=True)


def fleet(*rows: tuple[str, str, str, str]) -> list[FleetCheck]:
    """(mission, check, kind, target) -> the stored results' view, one probe a mission."""
    return [FleetCheck(m, c, f"{m.lower()}-1", k, t) for m, c, k, t in rows]


def central_of(lists: dict | list):
    """CentralChecks.for_probe over a table (probe, mission) -> checks, or one list for
    all; the version, like the real one, follows the content."""
    def for_probe(probe: str, mission: str) -> tuple[list[dict], str]:
        checks = lists if isinstance(lists, list) else lists[(probe, mission)]
        return checks, json.dumps(checks, sort_keys=True)
    return for_probe


def test_one_control_for_a_target_many_missions_check():
    plan = build(fleet(("FRA", "docs", "http", URL), ("KEN", "site", "http", URL),
                       ("BRA", "docs", "http", "https://other.example.org/")), None, OPEN,
                 icmp_ok=True)
    assert len(plan.targets) == 2
    assert plan.by_check[("FRA", "docs")] == plan.by_check[("KEN", "site")]
    target = plan.targets[plan.by_check[("FRA", "docs")]]
    assert (target.kind, target.target, target.label) == ("http", URL, URL)
    # A probe's own http check is rebuilt from its URL alone, with default settings.
    assert target.check == HttpCheck(id=f"control-{target.key}", kind="http", target=URL,
                                     confirm_count=0)


def test_local_tcp_and_dns_checks_cannot_be_reproduced_and_say_why():
    plan = build(fleet(("FRA", "web", "tcp", "web.example.org"), ("FRA", "dns", "dns", "9.9.9.9")),
                 None, OPEN, icmp_ok=True)
    assert plan.targets == {}
    assert "port" in plan.skipped[("FRA", "web")]
    assert "name" in plan.skipped[("FRA", "dns")]


def test_central_checks_give_the_full_settings_and_a_central_resolver_stands_in():
    central = {
        ("fra-1", "FRA"): [{"id": "dns", "kind": "dns", "target": "192.168.1.1",
                            "name": "documents.example.org", "timeout_s": 3}],
        ("ken-1", "KEN"): [{"id": "dns", "kind": "dns", "target": "10.0.0.1",
                            "name": "documents.example.org", "timeout_s": 3},
                           {"id": "web", "kind": "tcp", "target": "web.example.org",
                            "port": 443, "tls": True}],
    }
    rows = fleet(("FRA", "dns", "dns", "192.168.1.1"), ("KEN", "dns", "dns", "10.0.0.1"),
                 ("KEN", "web", "tcp", "web.example.org"))
    plan = build(rows, central_of(central),
                 ControlSettings(enabled=True, resolver="203.0.113.53"), icmp_ok=True)
    # Two missions' private resolvers, one question: asked once, of the centre's resolver.
    assert len(plan.targets) == 2
    dns = plan.targets[plan.by_check[("FRA", "dns")]]
    assert plan.by_check[("KEN", "dns")] == dns.key
    assert isinstance(dns.check, DnsCheck)
    assert (dns.check.target, dns.check.name, dns.check.timeout_s) == (
        "203.0.113.53", "documents.example.org", 3)
    assert dns.label == "documents.example.org A @203.0.113.53"
    tcp = plan.targets[plan.by_check[("KEN", "web")]]
    assert (tcp.label, tcp.check.port, tcp.check.tls) == ("web.example.org:443/tls", 443, True)
    # Without a central resolver, the missions' private resolvers are not asked.
    plan = build(rows, central_of(central), OPEN, icmp_ok=True)
    assert ("FRA", "dns") in plan.skipped and "private" in plan.skipped[("FRA", "dns")]


def test_private_targets_only_when_allowed_icmp_only_when_possible(tmp_path):
    rows = fleet(("FRA", "gw", "icmp", "192.168.1.1"), ("FRA", "ping", "icmp", "ping.example.org"))
    plan = build(rows, None, OPEN, icmp_ok=False)
    assert plan.targets == {}
    assert "ICMP socket" in plan.skipped[("FRA", "ping")]
    plan = build(rows, None, OPEN, icmp_ok=True)
    assert "private" in plan.skipped[("FRA", "gw")]
    assert {t.target for t in plan.targets.values()} == {"ping.example.org"}
    plan = build(rows, None, ControlSettings(enabled=True, probe_checks=True,
                                             private_targets=True), icmp_ok=True)
    assert {t.target for t in plan.targets.values()} == {"192.168.1.1", "ping.example.org"}
    # A CA file that lives on the probes cannot verify anything at the centre.
    central = [{"id": "docs", "kind": "http", "target": URL, "ca_file": "/etc/probe/ca.pem"}]
    plan = build(fleet(("FRA", "docs", "http", URL)), central_of(central), OPEN, True)
    assert "ca_file" in plan.skipped[("FRA", "docs")]
    (tmp_path / "ca.pem").write_text("x")
    central[0]["ca_file"] = str(tmp_path / "ca.pem")
    plan = build(fleet(("FRA", "docs", "http", URL)), central_of(central), OPEN, True)
    assert plan.by_check[("FRA", "docs")] in plan.targets


def test_bounded_keeping_the_most_shared_and_labels_stay_apart():
    rows = fleet(*[(f"M{i:02d}", "docs", "http", URL) for i in range(3)],
                 ("ZZZ", "one", "http", "https://one.example.org/"),
                 ("ZZY", "two", "http", "https://two.example.org/"))
    plan = build(rows, None, ControlSettings(enabled=True, probe_checks=True, max_targets=2),
                 icmp_ok=True)
    assert len(plan.targets) == 2
    assert plan.by_check[("M00", "docs")] in plan.targets
    assert "max_targets" in plan.skipped[("ZZZ", "one")] or \
        "max_targets" in plan.skipped[("ZZY", "two")]
    # The same URL with other settings is another control, and another metrics label.
    central = {("aaa-1", "AAA"): [{"id": "docs", "kind": "http", "target": URL,
                                   "method": "HEAD"}],
               ("bbb-1", "BBB"): []}
    plan = build(fleet(("AAA", "docs", "http", URL), ("BBB", "docs", "http", URL)),
                 central_of(central), OPEN, True)
    labels = sorted(t.label for t in plan.targets.values())
    assert len(labels) == 2 and labels[0] != labels[1]
    assert all(label.startswith(URL + " #") for label in labels)


def test_the_key_ignores_when_and_how_a_check_is_named():
    a = HttpCheck(id="a", kind="http", group="documents", target=URL, interval_s=10,
                  confirm_count=2)
    b = HttpCheck(id="b", kind="http", target=URL, interval_s=60, confirm_count=0)
    assert control_key(a) == control_key(b)
    assert control_key(a) != control_key(HttpCheck(id="a", kind="http", target=URL, method="HEAD"))


async def test_failures_trigger_at_once_debounced_per_target_recent_rounds_only():
    runner = ControlRunner(
        ControlSettings(enabled=True, probe_checks=True, failure_debounce_s=60), store=None,
        in_db=None,
        fleet=lambda: fleet(("FRA", "docs", "http", URL), ("KEN", "docs", "http", URL)),
        central=None, registry=CollectorRegistry(), retention_s=86_400)
    runner.replan()
    key = runner.key_for("FRA", "docs")
    periodic_due = runner._due[key]
    now = time.time()
    runner.note_failure("FRA", "docs", now - 5_000)  # a backlog's old round: nothing
    assert runner._due[key] == periodic_due
    runner.note_failure("FRA", "docs", now)
    assert runner._due[key] <= time.monotonic() and runner._trigger[key] == "failure"
    runner._due[key] = periodic_due
    runner.note_failure("KEN", "docs", now)  # same target, within the debounce: nothing
    assert runner._due[key] == periodic_due
    # A failure of a check the plan does not know yet is measured once it is planned.
    runner.fleet = lambda: fleet(("FRA", "docs", "http", URL), ("BRA", "new", "http",
                                                                "https://new.example.org/"))
    runner.note_failure("BRA", "new", now)
    runner.replan()
    new = runner.key_for("BRA", "new")
    assert runner._trigger[new] == "failure"


@pytest.mark.parametrize("bad", ["resolver.example.org", "300.1.1.1"])
def test_the_control_resolver_is_an_address(bad):
    with pytest.raises(ValueError, match="IP address"):
        ControlSettings(resolver=bad)


def test_a_planner_remembers_by_version_and_sees_a_changed_list():
    planner = Planner(OPEN, icmp_ok=True)
    rows = fleet(("FRA", "docs", "http", URL))
    central = [{"id": "docs", "kind": "http", "target": URL}]
    first = planner.build(rows, central_of(central))
    assert planner.build(rows, central_of(central)).targets == first.targets
    changed = [{"id": "docs", "kind": "http", "target": URL, "method": "HEAD"}]
    [target] = planner.build(rows, central_of(changed)).targets.values()
    assert target.check.method == "HEAD" and target.key not in first.targets


def test_a_probes_own_targets_only_when_the_operator_allows():
    rows = fleet(("FRA", "docs", "http", URL))
    plan = build(rows, None, ControlSettings(enabled=True), icmp_ok=True)
    assert plan.targets == {} and "probe_checks" in plan.skipped[("FRA", "docs")]
    # A central check of the same id is the centre's own: measured.
    plan = build(rows, central_of([{"id": "docs", "kind": "http", "target": URL}]),
                 ControlSettings(enabled=True), icmp_ok=True)
    assert plan.by_check[("FRA", "docs")] in plan.targets
