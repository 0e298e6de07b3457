import subprocess
import sys
import textwrap

import pytest

from collector import config as collector_config
from probes import config as probe_config
from unhindered.configfile import ConfigError

VALID = """\
probe_id: fra-1
mission: FRA
outbox: outbox.sqlite
collector:
  urls: [http://127.0.0.1:9640/]
  token_file: probe.token
checks:
  - id: internet-icmp
    kind: icmp
    target: 127.0.0.1
    interval_s: 10
  - id: documents-tcp
    kind: tcp
    group: documents
    target: 127.0.0.1
    port: 443
"""


def write(tmp_path, text, name="probe.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path):
    with pytest.raises(ConfigError) as caught:
        probe_config.load(path)
    return str(caught.value)


def test_valid_config_loads_with_paths_relative_to_the_file(tmp_path):
    config = probe_config.load(write(tmp_path, VALID))
    assert config.outbox == tmp_path / "outbox.sqlite"
    assert config.collector.token_file == tmp_path / "probe.token"
    assert [c.kind for c in config.checks] == ["icmp", "tcp"]
    assert config.checks[0].count == 5  # the documented default
    assert config.outbox_max_mib == 256  # the documented bound of the outbox


def test_the_outbox_bound_is_validated(tmp_path):
    config = probe_config.load(write(tmp_path, VALID + "outbox_max_mib: 16\n"))
    assert config.outbox_max_mib == 16
    message = error_of(write(tmp_path, VALID + "outbox_max_mib: 0\n"))
    assert "outbox_max_mib:" in message and "greater than or equal to 1" in message


@pytest.mark.parametrize("change, field, expectation, line", [
    (("interval_s: 10", "interval_s: 0"), "checks[0].interval_s",
     "greater than or equal to 0.1", 11),
    (("    port: 443", "    port: 70000"), "checks[1].port", "less than or equal to 65535", 16),
    (("kind: tcp", "kind: smoke-signal"), "checks[1]", "'icmp', 'tcp'", 12),
    (("mission: FRA", "mission: france"), "mission", "should match pattern", 2),
    (("    port: 443\n", ""), "checks[1].port", "Field required", 12),
    (("  token_file: probe.token\n", ""), "collector", "exactly one of token and token_file", 4),
    (("    target: 127.0.0.1\n    interval_s", "    target: 127.0.0.1\n    colour: red\n"
      "    interval_s"), "checks[0].colour", "unknown setting", 11),
])
def test_mistakes_name_file_line_field_and_expectation(tmp_path, change, field, expectation,
                                                       line):
    old, new = change
    assert old in VALID
    message = error_of(write(tmp_path, VALID.replace(old, new, 1)))
    assert str(tmp_path / "probe.yaml") in message
    assert f"line {line}: {field}:" in message
    assert expectation in message


def test_duplicate_check_ids_are_refused(tmp_path):
    message = error_of(write(tmp_path, VALID.replace("documents-tcp", "internet-icmp")))
    assert "check id 'internet-icmp' is used twice" in message


def test_yaml_syntax_and_missing_file(tmp_path):
    assert "not valid YAML" in error_of(write(tmp_path, "checks: [unclosed"))
    assert "cannot read the file" in error_of(tmp_path / "absent.yaml")
    assert "mapping" in error_of(write(tmp_path, "- just\n- a list\n"))


def test_cli_exits_2_with_the_message(tmp_path):
    path = write(tmp_path, VALID.replace("interval_s: 10", "interval_s: fast"))
    done = subprocess.run([sys.executable, "-m", "probes", "check-config", "-c", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "checks[0].interval_s" in done.stderr and "valid number" in done.stderr
    ok = subprocess.run([sys.executable, "-m", "probes", "check-config", "-c",
                         str(write(tmp_path, VALID, "good.yaml"))], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_collector_config_errors(tmp_path):
    path = write(tmp_path, "listen:\n  port: 99999\ndatabase:\n  url: mysql://x\n", "c.yaml")
    with pytest.raises(ConfigError) as caught:
        collector_config.load(path)
    message = str(caught.value)
    assert "line 2: listen.port:" in message
    assert "line 4: database.url:" in message and "sqlite:/// or postgresql://" in message
    done = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(path),
                           "check-config"], capture_output=True, text=True)
    assert done.returncode == 2 and "listen.port" in done.stderr


def test_errors_never_show_a_secret_that_was_given(tmp_path):
    # check-config's errors reach the journal: a secret setting is named, not shown, and a
    # URL's password is masked.
    path = write(tmp_path, """\
        database:
          url: mysql://unhindered:hunter2-db@db.example/x
        snmp:
          receiver:
            senders:
              - probe_id: fra-1
                community: "c0mmunity-secret-longer-than-sixty-four-characters-of-the-limit-set"
              - probe_id: fra-2
                user: {name: u1, auth_key: 12345678, priv_key: priv-pass-phrase}
        """, "c.yaml")
    with pytest.raises(ConfigError) as caught:
        collector_config.load(path)
    message = str(caught.value)
    assert "line 2: database.url:" in message and "mysql://unhindered:***@db.ex" in message
    assert "line 7: snmp.receiver.senders[0].community: String should have at most 64" in message
    assert "line 9: snmp.receiver.senders[1].user.auth_key: Input should be a valid str" in message
    for secret in ("hunter2", "c0mmunity", "12345678"):
        assert secret not in message, message
    path = write(tmp_path, VALID.replace("token_file: probe.token", "token: 42"))
    message = error_of(path)
    assert "collector.token: Input should be a valid string" in message and "42" not in message
