"""Administrative commands run by root where the service user exists: refused when they would
leave the service a file it cannot use, with the command to run instead. With a real system
user, created for the test and removed after it; as root only."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from collector.store.ownership import SERVICE_USER_VARIABLE, require_service_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates a system user: needs root")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def service_user(monkeypatch):
    """A new system user, named by SERVICE_USER_VARIABLE as the service's."""
    name = f"unh-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        monkeypatch.setenv(SERVICE_USER_VARIABLE, name)
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=True)


@contextmanager
def effective_user(account: pwd.struct_passwd):
    os.setegid(account.pw_gid)
    os.seteuid(account.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def refusal(database_url: str, *written: Path, argv=("probes", "list")) -> str | None:
    try:
        require_service_user(database_url, list(argv), written)
    except SystemExit as exc:
        return str(exc.code)
    return None


def test_root_is_sent_to_the_service_user_for_a_new_database(service_user, tmp_path):
    database = tmp_path / "collector.sqlite"
    message = refusal(f"sqlite:///{database}", argv=["-c", "/etc/u/c.yaml", "probes", "list"])
    assert message is not None
    assert message.startswith("unhindered-collector: run this as the service user: sudo -u "
                              f"{service_user.pw_name} unhindered-collector -c /etc/u/c.yaml "
                              "probes list\n")
    assert f"the database {database} does not exist yet" in message


def test_a_database_of_another_owner_is_refused_and_the_service_users_is_not(service_user,
                                                                             tmp_path):
    database = tmp_path / "collector.sqlite"
    database.touch()
    message = refusal(f"sqlite:///{database}")
    assert f"the database {database} belongs to root, not {service_user.pw_name}" in message
    os.chown(database, service_user.pw_uid, service_user.pw_gid)
    assert refusal(f"sqlite:///{database}") is None


def test_a_file_root_writes_anew_is_refused(service_user, tmp_path):
    database = tmp_path / "collector.sqlite"
    database.touch()
    os.chown(database, service_user.pw_uid, service_user.pw_gid)
    token = tmp_path / "probe.token"
    message = refusal(f"sqlite:///{database}", token, argv=["probes", "add", "--mission", "FRA",
                                                           "--token-file", str(token)])
    assert f"{token} would belong to root" in message
    assert "database" not in message.split("\n", 1)[1]


def test_the_service_user_itself_is_never_refused(service_user, tmp_path):
    os.chmod(tmp_path, 0o777)
    with effective_user(service_user):
        assert refusal(f"sqlite:///{tmp_path / 'collector.sqlite'}", tmp_path / "t") is None


def test_nothing_is_checked_without_the_user_or_without_a_sqlite_file(monkeypatch, tmp_path):
    missing = tmp_path / "collector.sqlite"
    monkeypatch.setenv(SERVICE_USER_VARIABLE, f"unh-absent-{uuid.uuid4().hex[:8]}")
    assert refusal(f"sqlite:///{missing}", tmp_path / "t") is None
    monkeypatch.setenv(SERVICE_USER_VARIABLE, "root")  # root's own files: a stated choice
    assert refusal(f"sqlite:///{missing}", tmp_path / "t") is None


def test_postgresql_and_memory_need_no_file(service_user):
    assert refusal("postgresql://collector@db.invalid/unhindered") is None
    assert refusal("sqlite://") is None


def test_probes_add_refuses_before_creating_anything(service_user, tmp_path):
    database, token = tmp_path / "collector.sqlite", tmp_path / "fra-1.token"
    done = subprocess.run([sys.executable, "-m", "collector.cli", "--database",
                           f"sqlite:///{database}", "probes", "add", "--mission", "FRA",
                           "--token-file", str(token)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"sudo -u {service_user.pw_name} unhindered-collector --database" in done.stderr
    assert not database.exists() and not token.exists()
