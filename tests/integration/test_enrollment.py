"""Enrollment: a one-time token traded for the probe's credential, and read tokens."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from aiohttp.test_utils import TestServer

from collector import cli as collector_cli
from collector.config import CollectorConfig
from collector.store.database import Store
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


@pytest.fixture
def unwritable_directory(request, tmp_path):
    """Makes tmp_path/fra-1, the credential's directory, unwritable; yields the function
    that makes it writable again."""
    directory = tmp_path / "fra-1"
    if request.param == "a file in the way":
        directory.write_text("not a directory\n")
        yield directory.unlink
        return
    # A read-only file system: unwritable even for root, as tests run here.
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(directory)],
                   check=True)
    mounted = [True]

    def writable() -> None:
        subprocess.run(["umount", str(directory)], check=True)
        mounted.clear()

    try:
        yield writable
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


@pytest.mark.parametrize("unwritable_directory", ["a file in the way", "read-only"],
                         indirect=True)
async def test_an_unwritable_credential_file_leaves_the_enrollment_token_unused(
        collector, tmp_path, unwritable_directory):
    url, store = collector
    enrollment = store.enroll_probe("fra-1", "FRA", valid_s=3600)
    config = probe_config(tmp_path, url, enrollment)
    with pytest.raises(EnrollmentFailed) as refused:
        await credential(config)
    message = str(refused.value)
    assert str(config.collector.token_file) in message
    assert "enrollment token was not used" in message
    assert [p.enrolled for p in store.list_probes()] == [False]
    # Once the directory can be written, the same enrollment token works.
    unwritable_directory()
    token = await credential(config)
    assert config.collector.token_file.read_text().strip() == token
    assert stat.S_IMODE(config.collector.token_file.stat().st_mode) == 0o600
    assert [p.enrolled for p in store.list_probes()] == [True]
    assert sorted(p.name for p in config.collector.token_file.parent.iterdir()) == [
        "credential"]  # no temporary file left behind


@pytest.mark.parametrize("existing", [None, 0o644, 0o666])
def test_probes_add_writes_the_credential_file_0600_whatever_was_there(tmp_path, existing):
    token_file = tmp_path / "credentials" / "fra-1.token"
    if existing is not None:
        token_file.parent.mkdir()
        token_file.write_text("an older credential\n")
        token_file.chmod(existing)
    database = f"sqlite:///{tmp_path / 'collector.sqlite'}"
    assert collector_cli.main(["--database", database, "probes", "add", "--mission", "FRA",
                               "--id", "fra-1", "--token-file", str(token_file)]) == 0
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert Store(database).probe_for_token(token).probe_id == "fra-1"
    assert [p.name for p in token_file.parent.iterdir()] == ["fra-1.token"]


def test_probes_add_says_what_to_do_when_the_credential_file_cannot_be_written(
        tmp_path, capsys):
    (tmp_path / "credentials").write_text("a file where the directory should be\n")
    database = f"sqlite:///{tmp_path / 'collector.sqlite'}"
    assert collector_cli.main(["--database", database, "probes", "add", "--mission", "FRA",
                               "--id", "fra-1", "--token-file",
                               str(tmp_path / "credentials" / "fra-1.token")]) == 1
    assert "probes revoke fra-1" in capsys.readouterr().err
