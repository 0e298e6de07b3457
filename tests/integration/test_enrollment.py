"""Enrollment: a one-time token traded for the probe's credential, and read tokens."""

from __future__ import annotations

import stat

import pytest
from aiohttp.test_utils import TestServer

from collector.config import CollectorConfig
from collector.web.app import create_app
from probes.config import ProbeConfig
from probes.enroll import EnrollmentFailed, credential


@pytest.fixture
async def collector(any_store):
    server = TestServer(create_app(CollectorConfig(), any_store), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/")), any_store
    await server.close()


def probe_config(tmp_path, url, enrollment, probe_id="fra-1", mission="FRA") -> ProbeConfig:
    return ProbeConfig.model_validate({
        "probe_id": probe_id, "mission": mission, "outbox": str(tmp_path / "o.sqlite"),
        "collector": {"urls": [url], "token_file": str(tmp_path / probe_id / "credential"),
                      "enrollment_token": enrollment, "backoff_initial_s": 0.05,
                      "backoff_max_s": 0.1},
        "checks": [{"id": "c", "kind": "tcp", "target": "127.0.0.1", "port": 9}],
    })


async def test_enrollment_token_works_once_and_gives_a_working_credential(collector, tmp_path):
    url, store = collector
    enrollment = store.enroll_probe("fra-1", "FRA", valid_s=3600)
    assert [p.enrolled for p in store.list_probes()] == [False]
    config = probe_config(tmp_path, url, enrollment)
    token = await credential(config)
    saved = config.collector.token_file
    assert saved.read_text().strip() == token
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert store.probe_for_token(token).probe_id == "fra-1"
    assert [p.enrolled for p in store.list_probes()] == [True]
    # A restart uses the saved credential and never the enrollment token again.
    assert await credential(config) == token
    # The same enrollment token, again (a copied config): refused, with the reason.
    saved.unlink()
    with pytest.raises(EnrollmentFailed, match="already used"):
        await credential(config)


async def test_expired_revoked_unknown_and_mismatched_enrollments(collector, tmp_path):
    url, store = collector
    expired = store.enroll_probe("fra-1", "FRA", valid_s=-1)
    with pytest.raises(EnrollmentFailed, match="expired"):
        await credential(probe_config(tmp_path, url, expired))
    revoked = store.enroll_probe("fra-2", "FRA", valid_s=3600)
    store.revoke_probe("fra-2")
    with pytest.raises(EnrollmentFailed, match="revoked"):
        await credential(probe_config(tmp_path, url, revoked, probe_id="fra-2"))
    with pytest.raises(EnrollmentFailed, match="unknown enrollment token"):
        await credential(probe_config(tmp_path, url, "uhe1.made-up"))
    other = store.enroll_probe("ken-1", "KEN", valid_s=3600)
    with pytest.raises(EnrollmentFailed, match="fix probe_id and mission"):
        await credential(probe_config(tmp_path, url, other))


def test_readers(any_store):
    token = any_store.add_reader("grafana")
    assert any_store.reader_for_token(token) == "grafana"
    assert any_store.reader_for_token(token + "x") is None
    assert any_store.revoke_reader("grafana")
    assert any_store.reader_for_token(token) is None
