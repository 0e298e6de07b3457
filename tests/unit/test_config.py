import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from collector import config as collector_config
from probes import config as probe_config
from unhindered.configfile import ConfigError

USER = pwd.getpwuid(os.geteuid()).pw_name  # whom the file checks' errors name

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
    token = tmp_path / "probe.token"  # VALID's credential: loading checks that it exists
    token.write_text("p_credential\n")
    token.chmod(0o600)
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


# -- the files a config names are checked when it is loaded --------------------------------


def test_the_outbox_needs_an_existing_writable_directory(tmp_path):
    message = error_of(write(tmp_path, VALID.replace("outbox: outbox.sqlite",
                                                     "outbox: spool/outbox.sqlite")))
    assert (f"line 3: outbox: the directory {tmp_path / 'spool'} does not exist; expected "
            f"an existing directory {USER} can write") in message, message
    (tmp_path / "spool").write_text("a file, not a directory")
    message = error_of(tmp_path / "probe.yaml")
    assert f"line 3: outbox: {tmp_path / 'spool'} is not a directory" in message, message


@pytest.mark.parametrize(("enrolling", "credential", "expected"), [
    (False, None, "probe.token (No such file or directory); expected a file {user} can read"),
    (True, None, None),  # enrollment will write it: its directory is enough
    (True, "saved/probe.token", "the directory {dir}/saved does not exist"),
    (True, 0o644, "probe.token holds a secret but its mode 0644 opens it to group or others"),
])
def test_the_credential_file_is_read_or_written(tmp_path, enrolling, credential, expected):
    text = VALID
    if enrolling:
        text = VALID.replace("  token_file: probe.token\n",
                            "  token_file: probe.token\n  enrollment_token: e_once\n")
    path = write(tmp_path, text)
    if credential is None or isinstance(credential, str):
        (tmp_path / "probe.token").unlink()
    if isinstance(credential, str):
        path.write_text(text.replace("token_file: probe.token", f"token_file: {credential}"))
    if isinstance(credential, int):
        (tmp_path / "probe.token").chmod(credential)
    if expected is None:
        assert probe_config.load(path).collector.token_file == tmp_path / "probe.token"
        return
    message = error_of(path)
    assert "line 6: collector.token_file: " in message
    assert expected.format(dir=tmp_path, user=USER) in message, message


def test_the_enrollment_token_file_is_needed_only_until_the_credential_is_saved(tmp_path):
    text = VALID.replace("  token_file: probe.token\n", "  token_file: probe.token\n"
                         "  enrollment_token_file: enrollment.token\n")
    path = write(tmp_path, text)  # the credential is there: the spent token may be gone
    assert probe_config.load(path).collector.enrollment_token_file is not None
    (tmp_path / "probe.token").unlink()  # first start: the enrollment token must be there
    message = error_of(path)
    assert (f"line 7: collector.enrollment_token_file: cannot read "
            f"{tmp_path / 'enrollment.token'} (No such file or directory)") in message, message


def test_check_config_refuses_a_database_directory_that_is_not_there(tmp_path):
    path = write(tmp_path, "database:\n  url: sqlite:///nowhere/c.sqlite\n", "c.yaml")
    done = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(path),
                           "check-config"], capture_output=True, text=True)
    assert done.returncode == 2
    assert (f"line 2: database.url: the directory {tmp_path / 'nowhere'} does not exist; "
            "expected an existing directory") in done.stderr, done.stderr
    path.write_text("database:\n  url: postgresql://unhindered@db.invalid/unhindered\n")
    assert collector_config.load(path).database.url.startswith("postgresql://")


def test_a_command_line_database_replaces_the_configs_before_its_file_is_checked(tmp_path):
    path = write(tmp_path, "database:\n  url: sqlite:///nowhere/c.sqlite\n", "c.yaml")
    elsewhere = f"sqlite:///{tmp_path / 'here.sqlite'}"
    done = subprocess.run([sys.executable, "-m", "collector.cli", "probes", "list", "-c",
                           str(path), "--database", elsewhere], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "here.sqlite").exists() and not (tmp_path / "nowhere").exists()
    done = subprocess.run([sys.executable, "-m", "collector.cli", "probes", "list", "-c",
                           str(path), "--database", "sqlite:///elsewhere/x.sqlite"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "(the command line) database.url: the directory" in done.stderr, done.stderr


@pytest.fixture
def shared_dir():
    """A directory anyone may read (pytest's own are private to root), not write."""
    path = Path(tempfile.mkdtemp(prefix="unhindered-as-nobody-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_files_are_checked_as_the_user_the_program_runs_as(shared_dir):
    # Root reads anything: the checks must be made as the program's own user.
    if os.geteuid() != 0:
        pytest.skip("needs root, to load the config as another user (nobody)")
    shared = shared_dir
    path = write(shared, VALID)
    path.chmod(0o644)
    # A forked child turned nobody (the interpreter, under /root, is not nobody's to run).
    read, written = os.pipe()
    child = os.fork()
    if child == 0:
        message = "loaded"
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            probe_config.load(path)
        except ConfigError as exc:
            message = str(exc)
        finally:
            os.write(written, message.encode())
            os._exit(0)
    os.close(written)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(child, 0)
    nobody = pwd.getpwuid(65534).pw_name
    assert (f"line 3: outbox: the directory {shared} is not writable by {nobody}"
            in message), message
    assert (f"line 6: collector.token_file: cannot read {shared / 'probe.token'} "
            f"(Permission denied); expected a file {nobody} can read") in message, message
