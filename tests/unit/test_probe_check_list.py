"""The probe tells the collector which checks it runs, and since when (issue 12, case 7):
every batch carries the list, which changes with a reload or a new central list."""

from __future__ import annotations

import gzip

from probes import config as probe_config
from probes.app import Probe
from tests.unit.test_measurement import icmp, measurement
from unhindered.measurement import encode_result, read_batch, with_seq

CONFIG = """\
probe_id: fra-1
mission: FRA
outbox: outbox.sqlite
collector: {urls: ["http://127.0.0.1:9640/"], token_file: probe.token}
central: {enabled: false}
local: {gateway: none, resolver: none}
checks:
  - {id: internet-icmp, kind: icmp, target: 127.0.0.1}
"""
DOCUMENTS = "  - {id: documents-tcp, kind: tcp, group: documents, target: 127.0.0.1, port: 443}\n"


async def test_every_batch_carries_the_checks_the_probe_runs_and_since_when(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(CONFIG + DOCUMENTS)
    (tmp_path / "probe.token").write_text("uh1.test\n")
    (tmp_path / "probe.token").chmod(0o600)
    probe = Probe(probe_config.load(path), path)
    try:
        probe.schedule()
        first = probe.pusher.check_list
        assert first.ids == ["internet-icmp", "documents-tcp"]
        documents = probe.config.checks[1]
        assert probe._runs(documents)

        # A reload that keeps the same checks keeps the list and its time.
        assert probe.reload()
        assert probe.pusher.check_list == first

        # One without the documents check: a new list, from the reload on; a confirmation
        # round of it still under way stops there.
        path.write_text(CONFIG)
        assert probe.reload()
        now = probe.pusher.check_list
        assert now.ids == ["internet-icmp"]
        assert now.since > first.since
        assert not probe._runs(documents)

        rows = [(7, encode_result(measurement.validate_python(icmp())))]
        body = gzip.decompress(probe.pusher._body([(s, with_seq(s, e)) for s, e in rows], 0))
        assert read_batch(body).checks == now
    finally:
        probe.outbox.close()
