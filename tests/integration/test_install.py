"""deploy/install-collector and deploy/install-probe, run as shipped with --prefix into a
temporary root: the tree they make, the units as installed (systemd-analyze verify), and the
installed programs at work: a collector on loopback, a probe registered with it whose
results arrive. Both installers share one virtualenv, as on a machine that runs both: the
collector's makes it, the probe's adds its extra. Needs PyPI or pip's cache; about 40 s
with a warm cache, 35 s of it pip."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from collector.tls_certs import make_authority
from tests.support import free_port, wait_for
from tests.support.systemd import (
    add_host_program,
    add_system_units,
    exec_commands,
    verify,
)

# One worker installs once for the module (pytest-xdist).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("install")]

SOURCE = Path(__file__).resolve().parents[2]
UNITS = ("unhindered-collector.service", "unhindered-probe.service")
INSTALL_TIMEOUT_S = 600


@dataclass
class Link:
    """How the probe and the test reach the installed collector: the scheme, the
    collector's TLS settings, the probe's trust settings, and a context for the test's own
    requests."""

    port: int
    scheme: str = "http"
    collector_settings: dict = field(default_factory=dict)  # merged into collector.yaml
    probe_settings: dict = field(default_factory=dict)  # into probe.yaml's collector:
    context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5, context=self.context) as r:
            return r.read().decode()


@dataclass
class Installed:
    root: Path
    link: Link
    outputs: dict[str, str]  # each installer's stdout and stderr, by role

    @property
    def bin(self) -> Path:
        return self.root / "opt/unhindered/venv/bin"

    @property
    def etc(self) -> Path:
        return self.root / "etc/unhindered"

    @property
    def state(self) -> Path:
        return self.root / "var/lib/unhindered"


def environ(build: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    # setuptools' build directories in the temp dir, not the checkout's (see test_extras).
    config = build / "setup.cfg"
    config.write_text(f"[build]\nbuild_base = {build}\n[egg_info]\negg_base = {build}\n")
    # The test's user owns every file here, on purpose: where a system user `unhindered`
    # exists, the collector would send root to it (collector/store/ownership.py).
    return env | {"DIST_EXTRA_CONFIG": str(config), "PIP_NO_INPUT": "1",
                  "UNHINDERED_SERVICE_USER": "root"}


def run(argv: list, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs a command that must exit 0."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env,
                          cwd="/", timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(done.args)} exited {done.returncode}\n"
                                  f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def install(role: str, root: Path, env: dict) -> str:
    started = time.monotonic()
    done = run([SOURCE / "deploy" / f"install-{role}", "--prefix", root,
                "--python", sys.executable, "--pip-args", "--quiet --progress-bar off"],
               env, timeout=INSTALL_TIMEOUT_S)
    print(f"install-{role}: {time.monotonic() - started:.0f} s")
    return done.stdout + done.stderr


def edit_yaml(path: Path, **changes) -> None:
    settings = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        settings[key] = settings.get(key, {}) | value if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(settings))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """Installed as an operator would: the collector, its config edited, a probe registered
    with a credential file, the probe's config written, then the probe."""
    tmp = tmp_path_factory.mktemp("install")
    root, build = tmp / "root", tmp / "build"
    build.mkdir()
    env = environ(build)
    # Over TLS, the collector's certificate from a throwaway CA the probe is told to trust.
    certs = tmp / "tls"
    certs.mkdir()
    ca = make_authority(certs, "Unhindered install-test CA")
    server = ca.issue(certs, "collector", ["127.0.0.1"])
    link = Link(free_port(), "https",
                {"tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}},
                {"ca_file": str(ca.cert_file)}, ssl.create_default_context(cafile=ca.cert_file))
    outputs = {"collector": install("collector", root, env)}
    it = Installed(root, link, outputs)

    edit_yaml(it.etc / "collector.yaml", listen={"host": "127.0.0.1", "port": link.port},
              logging={"format": "text"}, **link.collector_settings)
    (it.etc / "probe.yaml").write_text(yaml.safe_dump({
        "probe_id": "fra-1", "mission": "FRA", "outbox": str(it.state / "outbox.sqlite"),
        "collector": {"urls": [link.url], "token_file": str(it.state / "probe.token"),
                      "enrollment_token": enrollment_token(it, "fra-1", env),
                      "batch_max_age_s": 0.2, **link.probe_settings},
        "checks": [{"id": "collector-tcp", "kind": "tcp", "target": "127.0.0.1",
                    "port": link.port, "interval_s": 1}],
        "local": {"gateway": "none", "resolver": "none"},
    }))
    it.outputs["probe"] = install("probe", root, env)
    return it


def enrollment_token(it: Installed, probe_id: str, env: dict) -> str:
    """Registers a probe with the installed collector; its one-time token."""
    done = run([it.bin / "unhindered-collector", "probes", "add", "-c",
                it.etc / "collector.yaml", "--mission", "FRA", "--id", probe_id], env)
    return done.stdout.strip().splitlines()[-1]


def probe_states(it: Installed, env: dict) -> dict[str, str]:
    done = run([it.bin / "unhindered-collector", "probes", "list", "--json", "-c",
                it.etc / "collector.yaml"], env)
    return {p["probe"]: p["state"] for p in map(json.loads, done.stdout.splitlines())}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_tree(installed):
    root, etc, state = installed.root, installed.etc, installed.state
    assert (mode(etc), mode(state)) == (0o750, 0o750)
    assert mode(etc / "collector.yaml") == 0o640
    # Under --prefix no user is made and no owner changed: the tree is the caller's.
    assert {p.stat().st_uid for p in (etc, state, etc / "collector.yaml")} == {os.getuid()}
    for unit in UNITS:
        installed_unit = root / "etc/systemd/system" / unit
        assert installed_unit.read_bytes() == (SOURCE / "deploy/systemd" / unit).read_bytes()
        assert mode(installed_unit) == 0o644
    assert (root / "opt/unhindered/README.md").is_file()
    for program in ("unhindered-collector", "unhindered-probe"):
        assert (root / "usr/local/bin" / program).resolve() == installed.bin / program
    assert (root / "opt/unhindered/docs/deploy.md").is_file()
    # The collector's config came from the example, its paths moved under the root; the
    # probe's, written before its installer ran, was kept and validated.
    example = (SOURCE / "deploy/examples/collector.yaml").read_text()
    skeleton = yaml.safe_load(example.replace("/var/lib/unhindered/", f"{state}/")
                              .replace("/etc/unhindered/", f"{etc}/"))
    assert yaml.safe_load((etc / "collector.yaml").read_text()) == skeleton | {
        "listen": {"host": "127.0.0.1", "port": installed.link.port},
        "logging": skeleton["logging"] | {"format": "text"}} | installed.link.collector_settings
    assert f"{etc / 'collector.yaml'}: valid" in installed.outputs["collector"]
    assert "keeping the config" in installed.outputs["probe"]
    assert f"{etc / 'probe.yaml'}: valid" in installed.outputs["probe"]
    assert "reusing the virtualenv" in installed.outputs["probe"]


def test_the_installed_programs_are_this_version(installed, tmp_path):
    version = re.search(r'^version = "(.+)"$', (SOURCE / "pyproject.toml").read_text(), re.M)
    for program in ("unhindered-collector", "unhindered-probe"):
        shown = run([installed.bin / program, "--version"], environ(tmp_path)).stdout
        assert shown.startswith(f"{program} {version.group(1)} "), shown


@pytest.mark.parametrize("unit", UNITS)
def test_the_installed_units_are_valid_for_systemd(installed, unit):
    root = installed.root
    add_system_units(root)
    for command in exec_commands((root / "etc/systemd/system" / unit).read_text()):
        if command.startswith("/opt/unhindered/"):
            assert (root / command.lstrip("/")).is_file(), f"{unit} runs {command}"
        elif not (root / command.lstrip("/")).exists():
            add_host_program(root, command)  # e.g. /bin/kill
    verify(root, unit)


def test_the_installed_programs_work_together(installed, tmp_path):
    env, link = environ(tmp_path), installed.link
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("collector", "probe")}  # noqa: SIM115
    processes = {}
    try:
        processes["collector"] = subprocess.Popen(
            [installed.bin / "unhindered-collector", "serve", "-c",
             installed.etc / "collector.yaml"],
            stdout=logs["collector"], stderr=subprocess.STDOUT, env=env, cwd="/")
        wait_for(lambda: link.get("healthz"), 30, "the installed collector's /healthz")
        processes["probe"] = subprocess.Popen(
            [installed.bin / "unhindered-probe", "run", "-c", installed.etc / "probe.yaml"],
            stdout=logs["probe"], stderr=subprocess.STDOUT, env=env, cwd="/")
        success = re.compile(r'^unhindered_check_success\{check="collector-tcp",'
                             r'mission="FRA"\} 1(\.0)?$', re.M)
        wait_for(lambda: success.search(link.get("metrics")), 30,
                 "the probe's result in the collector's /metrics")
    except BaseException:
        for name, log in logs.items():
            log.flush()
            print(f"--- {name}\n{(tmp_path / f'{name}.log').read_text()[-3000:]}")
        raise
    finally:
        for process in reversed(processes.values()):
            process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(20) for name, process in processes.items()}
        for log in logs.values():
            log.close()
    assert codes == {"collector": 0, "probe": 0}
    # The probe enrolled over TLS: its token is spent, its credential saved for it alone.
    assert mode(installed.state / "probe.token") == 0o600
    assert probe_states(installed, env)["fra-1"] == "active"
    assert (installed.state / "collector.sqlite").is_file()
    assert (installed.state / "outbox.sqlite").is_file()


def test_running_an_installer_again_keeps_the_config(installed, tmp_path):
    config = installed.etc / "collector.yaml"
    before = config.read_bytes()
    output = install("collector", installed.root, environ(tmp_path))
    assert "keeping the config" in output and "reusing the virtualenv" in output
    assert config.read_bytes() == before


def test_a_probe_refuses_a_collector_it_does_not_trust(installed, tmp_path):
    """Without collector.ca_file the probe trusts only the system's store, where the test
    CA is not: it refuses before sending its enrollment token, and says why."""
    env, link = environ(tmp_path), installed.link
    config = installed.etc / "untrusting.yaml"
    config.write_text(yaml.safe_dump({
        "probe_id": "fra-2", "mission": "FRA", "outbox": str(tmp_path / "outbox.sqlite"),
        "collector": {"urls": [link.url], "token_file": str(tmp_path / "probe.token"),
                      "enrollment_token": enrollment_token(installed, "fra-2", env)},
        "checks": [{"id": "collector-tcp", "kind": "tcp", "target": "127.0.0.1",
                    "port": link.port, "interval_s": 1}],
        "local": {"gateway": "none", "resolver": "none"},
    }))
    with subprocess.Popen([installed.bin / "unhindered-collector", "serve", "-c",
                           installed.etc / "collector.yaml"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.STDOUT, env=env, cwd="/") as collector:
        try:
            wait_for(lambda: link.get("healthz"), 30, "the installed collector's /healthz")
            log = tmp_path / "probe.log"
            with log.open("w") as out, subprocess.Popen(
                    [installed.bin / "unhindered-probe", "run", "-c", config], stdout=out,
                    stderr=subprocess.STDOUT, env=env) as probe:
                try:
                    # It keeps trying (a certificate may be mid-renewal), saying why each time.
                    wait_for(lambda: "not trusted" in log.read_text() or probe.poll(), 30,
                             "the probe to refuse the collector's certificate")
                finally:
                    probe.kill()
        finally:
            collector.send_signal(signal.SIGTERM)
            assert collector.wait(20) == 0
    said = log.read_text()
    assert "the collector's certificate is not trusted" in said, said
    assert "collector.ca_file" in said, said
    assert not (tmp_path / "probe.token").exists()
    assert probe_states(installed, env)["fra-2"] == "enrolling"
