"""The centre's control measurement, end to end in the lab: a mission whose view of a
target is tampered with (its resolver lies for the documents site's name; its traffic to
the site is diverted to a block page) while the centre's is not. The collector, in the
centre namespace, measures the same targets itself, with the probes' own check code, and
the API gives its result beside the mission's: the real address against the lie, the
real page against the block page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from collector.store.database import Store
from tests.support import wait_for
from tests.support.lab.blockpage_responder import BLOCK_PAGE
from tests.support.lab.faults import (
    divert,
    lying_zone,
    start_blockpage,
    start_resolver,
    start_site,
)
from tests.support.lab.https_responder import OK_BODY
from tests.support.spine import COLLECTOR_PORT, Collector, Probe

pytestmark = pytest.mark.netlab

NAME = "documents.lab.test"
WRONG = "198.19.0.66"


def test_the_centre_sees_the_real_site_where_the_mission_sees_a_lie(lab, tmp_path: Path):
    mission = lab.add_mission("FRA")
    site, blocker, honest, liar = (lab.add_target() for _ in range(4))
    zone = {"origin": "lab.test.", "records": {"documents": {"A": [site.ipv4]}}}
    start_site(lab, tmp_path, site.ipv4, 8080)
    start_blockpage(lab, tmp_path, blocker.ipv4, 8081, status=403)
    start_resolver(lab, tmp_path, zone, [honest.ipv4], "honest")
    start_resolver(lab, tmp_path, lying_zone(zone, "documents", [WRONG]), [liar.ipv4], "liar")
    url = f"http://{site.ipv4}:8080/ok"
    divert(lab, mission, site.ipv4, 8080, blocker.ipv4, 8081)

    # The dns check comes from the central lists (a probe's own dns check does not say
    # its name on the wire); the http check is the probe's own.
    checks_file = tmp_path / "checks.yaml"
    checks_file.write_text(yaml.safe_dump({"all": [
        {"id": "docs-dns", "kind": "dns", "target": liar.ipv4, "name": NAME,
         "interval_s": 2, "timeout_s": 1}]}))
    collector = Collector(lab, tmp_path, {
        "checks_file": str(checks_file),
        "control": {"enabled": True, "interval_s": 3, "resolver": honest.ipv4,
                    "probe_checks": True, "private_targets": True, "timeout_s": 10}})
    reader = Store(collector.database)
    try:
        reader.migrate()
        token = reader.add_reader("tests")
    finally:
        reader.close()
    collector.start()
    probe = Probe(lab, mission, tmp_path, collector, checks=[
        {"id": "docs-http", "kind": "http", "target": url, "interval_s": 2, "timeout_s": 2,
         "group": "documents"}])
    probe.start()

    def control(check: str) -> dict | None:
        now = time.time()
        query = urlencode({"mission": "FRA", "check": check, "from": int(now - 600),
                           "to": int(now + 60)})
        status, _headers, body = lab.fetch(
            lab.centre.name, f"http://{lab.centre.ipv4}:{COLLECTOR_PORT}/api/v1/control?"
            + query, headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert status == 200, body
        page = json.loads(body)
        return page if page["items"] and page["probe"] else None

    http = wait_for(lambda: control("docs-http"), 40, "the centre's control of the site")
    # The mission got the block page; the centre, measuring the same URL, the site.
    assert http["probe"]["last_ok"] is False and http["probe"]["last_reason"] == "http_status"
    assert http["probe"]["figures"]["status_code"] == 403
    assert http["probe"]["figures"]["body_bytes"] == len(BLOCK_PAGE)
    first = http["items"][0]
    assert first["trigger"] == "failure" and first["target"] == url
    assert first["ok"] is True and first["figures"]["status_code"] == 200
    assert first["figures"]["body_bytes"] == len(OK_BODY)

    dns = wait_for(lambda: control("docs-dns"), 30, "the centre's control of the name")
    # The mission's resolver answered the lie; the centre's resolver, asked the same
    # question, the site's address.
    assert dns["probe"]["figures"]["answers"] == [WRONG]
    item = dns["items"][0]
    assert item["target"] == honest.ipv4 and item["settings"]["name"] == NAME
    assert item["ok"] is True and item["figures"]["answers"] == [site.ipv4]
    assert item["label"] == f"{NAME} A @{honest.ipv4}"
    probe.stop()
    collector.stop()
