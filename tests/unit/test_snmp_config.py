"""The probe's snmp: section: what it accepts, and what it refuses with an error that names
the file, the line, the field and what to do."""

import subprocess
import sys

import pytest

from probes import config as probe_config
from tests.unit.test_config import USER, VALID, error_of, write

SNMP = """\
snmp:
  agent:
    listen: 127.0.0.1:16161
  users:
    - name: monitor
      auth_key: auth-pass-phrase
      priv_key_file: monitor.priv
  community: s3cret-community
  notify:
    - name: collector
      address: 198.51.100.7:162
      user: monitor
    - name: noc
      address: "[2001:db8::7]:162"
      version: v2c
      type: trap
"""


def secret_file(path, text: str | bytes) -> None:
    """Written as an operator must: secret files open to group or others are refused."""
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    path.chmod(0o600)


def test_a_full_snmp_section_loads(tmp_path):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    config = probe_config.load(write(tmp_path, VALID + SNMP))
    snmp = config.snmp
    assert snmp.agent.address == ("127.0.0.1", 16161)
    assert snmp.users[0].priv_key_file == tmp_path / "monitor.priv"
    assert snmp.users[0].keys() == ("auth-pass-phrase", "priv-pass-phrase")
    assert snmp.read_community() == "s3cret-community"
    collector, noc = snmp.notify
    assert (collector.version, collector.type, collector.retries) == ("v3", "inform", 3)
    assert noc.host_port == ("2001:db8::7", 162)


def test_without_snmp_the_probe_does_not_load_pysnmp(tmp_path):
    config = probe_config.load(write(tmp_path, VALID))
    assert config.snmp is None
    code = ("import sys, probes.app, probes.cli, probes.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('pysnmp', 'pysmi'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


@pytest.mark.parametrize("old, new, field, expectation", [
    ("community: s3cret-community", "community: public", "snmp.community",
     "must not be public, private or empty"),
    ("community: s3cret-community", "community: PUBLIC", "snmp.community",
     "must not be public"),
    ("auth_key: auth-pass-phrase", "auth_key: short", "snmp.users[0]",
     "auth_key needs at least 8 characters"),
    ("      priv_key_file: monitor.priv\n", "", "snmp.users[0]",
     "exactly one of priv_key and priv_key_file"),
    ("      user: monitor\n", "", "snmp", "notify target collector: user must name one of"),
    ("  community: s3cret-community\n", "", "snmp", "notify target noc: v2c needs"),
    ("listen: 127.0.0.1:16161", "listen: localhost:161", "snmp.agent.listen",
     "expected IP:PORT with an IP address"),
    ("address: 198.51.100.7:162", "address: 198.51.100.7:99999", "snmp.notify[0].address",
     "expected IP:PORT"),
    ("      type: trap", "      type: shout", "snmp.notify[1].type", "'inform' or 'trap'"),
])
def test_mistakes_are_refused_naming_the_field(tmp_path, old, new, field, expectation):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    assert old in SNMP
    message = error_of(write(tmp_path, VALID + SNMP.replace(old, new, 1)))
    assert str(tmp_path / "probe.yaml") in message
    assert f": {field}:" in message and expectation in message, message


def test_a_public_community_in_a_file_is_refused_when_read(tmp_path):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    secret_file(tmp_path / "community", "s3cret-community\n")
    text = VALID + SNMP.replace("community: s3cret-community", "community_file: community")
    snmp = probe_config.load(write(tmp_path, text)).snmp
    # Changed after the config was loaded: refused when run reads it.
    (tmp_path / "community").write_text("public\n")
    with pytest.raises(ValueError, match="must not be public"):
        snmp.read_community()


def check_config(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = write(tmp_path, text)
    return subprocess.run([sys.executable, "-m", "probes", "check-config", "-c", str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize(("files", "field", "expectation"), [
    ({"community": "public\n"}, "snmp.community_file",
     "the community must not be public, private or empty"),
    ({"community": "Private"}, "snmp.community_file",
     "the community must not be public, private or empty"),
    ({"community": "\n"}, "snmp.community_file",
     "the community must not be public, private or empty"),
    ({"community": b"\xff\xfe"}, "snmp.community_file", "the file is not UTF-8 text"),
    ({"community": "s3cret-community", "monitor.priv": "short\n"},
     "snmp.users[0].priv_key_file", "the pass phrase in it needs at least 8 characters"),
])
def test_check_config_reads_the_secret_files_as_run_does(tmp_path, files, field, expectation):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    for name, content in files.items():
        secret_file(tmp_path / name, content)
    text = VALID + SNMP.replace("community: s3cret-community", "community_file: community")
    done = check_config(tmp_path, text)
    assert done.returncode == 2, done.stdout
    key = field.rsplit(".", 1)[-1]
    line = next(n + 1 for n, text_line in enumerate(text.splitlines()) if key in text_line)
    assert str(tmp_path / "probe.yaml") in done.stderr
    assert f"line {line}: {field}: {expectation}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "short" not in done.stderr and "s3cret" not in done.stderr  # no secret echoed


def test_a_secret_file_missing_or_open_to_others_is_refused_naming_the_line(tmp_path):
    # Refused before run does anything (such as spending an enrollment token).
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    text = VALID + SNMP.replace("community: s3cret-community", "community_file: community")
    done = check_config(tmp_path, text)
    assert done.returncode == 2
    assert (f"line 24: snmp.community_file: cannot read {tmp_path / 'community'} (No such "
            f"file or directory); expected a file {USER} can read"
            ) in done.stderr, done.stderr
    (tmp_path / "community").write_text("s3cret-community\n")
    (tmp_path / "community").chmod(0o640)
    done = check_config(tmp_path, text)
    assert done.returncode == 2
    assert (f"line 24: snmp.community_file: {tmp_path / 'community'} holds a secret but "
            f"its mode 0640 opens it to group or others; expected only its owner to read "
            f"it: run chmod 600 {tmp_path / 'community'}") in done.stderr, done.stderr
    assert "s3cret" not in done.stderr


def test_check_config_accepts_good_secret_files(tmp_path):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    secret_file(tmp_path / "community", "s3cret-community\n")
    text = VALID + SNMP.replace("community: s3cret-community", "community_file: community")
    done = check_config(tmp_path, text)
    assert done.returncode == 0, done.stderr


def test_check_config_refuses_public_with_exit_2(tmp_path):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    path = write(tmp_path, VALID + SNMP.replace("s3cret-community", "public"))
    done = subprocess.run([sys.executable, "-m", "probes", "check-config", "-c", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "line 24: snmp.community: the community must not be public" in done.stderr


def test_errors_do_not_echo_keys(tmp_path):
    secret_file(tmp_path / "monitor.priv", "priv-pass-phrase\n")
    message = error_of(write(tmp_path, VALID + SNMP.replace("auth-pass-phrase", "sh0rt")))
    assert "auth_key needs at least 8 characters" in message and "sh0rt" not in message
    message = error_of(write(tmp_path, VALID + SNMP.replace("      user: monitor\n", "")))
    assert "auth-pass-phrase" not in message and "s3cret" not in message
