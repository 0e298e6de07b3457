"""Each extra installs alone: `pip install '.[probe]'` and `pip install '.[collector]'`, each
in a fresh virtualenv, give a program that starts, validates the shipped example config and
does its everyday work, talking to nothing outside loopback.

The install is not editable (a wheel built from this checkout, as pip builds it), so a
module or data file that pyproject.toml fails to ship shows here. The wheel is built once,
with its build directories in the temp dir, not the checkout's build/ and egg-info, so no
left-over of an earlier build can slip into it; two builds side by side in one checkout
would also race on the MIB that setup.py writes into unhindered/snmp/mibs/. The two
virtualenvs are then installed in parallel. Needs PyPI (or pip's cache); about a minute
with a warm cache."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# One worker builds the extras' virtualenvs once for the module (pytest-xdist).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.xdist_group("extras")]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
EXTRAS = ("probe", "collector")
INSTALL_TIMEOUT_S = 900


def _environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUTF8="1")
    return env


def _timed(argv: list, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                            env=kwargs.pop("env", _environ()), **kwargs)
    return result, time.monotonic() - started


def _explain(result: subprocess.CompletedProcess) -> str:
    return (f"{' '.join(result.args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """{extra: (venv, pip's result)} once for the module; the virtualenvs are removed after."""
    tmp = tmp_path_factory.mktemp("extras")
    wheels, build = tmp / "wheels", tmp / "build"
    (build / "egg").mkdir(parents=True)
    extra_cfg = tmp / "build.cfg"
    extra_cfg.write_text(f"[build]\nbuild_base = {build}\n"
                         f"[egg_info]\negg_base = {build / 'egg'}\n")
    build_env = _environ() | {"DIST_EXTRA_CONFIG": str(extra_cfg)}  # read by setuptools
    venvs = {extra: tmp / f"{extra}-venv" for extra in EXTRAS}

    started = time.monotonic()
    with ThreadPoolExecutor(len(EXTRAS) + 1) as pool:
        wheel_job = pool.submit(_timed, [sys.executable, "-m", "pip", "wheel", "--no-deps",
                                         "--wheel-dir", wheels, ROOT],
                                env=build_env, timeout=INSTALL_TIMEOUT_S)
        venv_jobs = [pool.submit(_timed, [sys.executable, "-m", "venv", venv], timeout=120)
                     for venv in venvs.values()]
        built, build_s = wheel_job.result()
        for job in venv_jobs:
            result, _ = job.result()
            assert result.returncode == 0, _explain(result)
        assert built.returncode == 0, _explain(built)
        (wheel,) = wheels.glob("unhindered-*.whl")
        install_jobs = {
            extra: pool.submit(_timed, [venv / "bin" / "python", "-m", "pip", "install",
                                        f"{wheel}[{extra}]"], timeout=INSTALL_TIMEOUT_S)
            for extra, venv in venvs.items()}
        results = {extra: job.result() for extra, job in install_jobs.items()}
    print(f"\nextras: wheel built in {build_s:.0f} s; "
          + "; ".join(f"{extra} installed in {s:.0f} s" for extra, (_, s) in results.items())
          + f"; {time.monotonic() - started:.0f} s in all (in parallel)")
    yield {extra: (venvs[extra], results[extra][0]) for extra in EXTRAS}
    for venv in venvs.values():
        shutil.rmtree(venv, ignore_errors=True)


def _venv(installed, extra: str) -> Path:
    venv, pip = installed[extra]
    assert pip.returncode == 0, _explain(pip)
    return venv


def _ok(argv: list, cwd: Path) -> str:
    """Runs a command that must exit 0; its stdout and stderr together."""
    result, _ = _timed(argv, cwd=cwd, timeout=120)
    assert result.returncode == 0, _explain(result)
    return result.stdout + result.stderr


# Run by each virtualenv's own python, outside the checkout: the installed copy is what
# loads; the MIB compiled at build time is in the wheel; what the other extra brings is not.
INSPECT = """
import importlib.util, json, sys
import unhindered
from pysnmp.smi import builder
from unhindered.snmp import mibs
b = builder.MibBuilder()
mibs.add_to(b)
print(json.dumps({
    "unhindered": unhindered.__file__,
    "mib": sorted(b.mibSymbols["UNHINDERED-MIB"]),
    "absent": [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None],
}))
"""


def _inspect(venv: Path, cwd: Path, *elsewhere: str) -> dict:
    return json.loads(_ok([venv / "bin" / "python", "-c", INSPECT, *elsewhere], cwd).strip()
                      .splitlines()[-1])


def test_probe_extra_alone(installed, tmp_path):
    venv = _venv(installed, "probe")
    probe = venv / "bin" / "unhindered-probe"

    assert "check-config" in _ok([probe, "--help"], tmp_path)
    # One round of a TCP check against a listener of ours on loopback. (The shipped
    # example names /var/lib/unhindered, which only its own test provides:
    # tests/netlab/test_examples.py.)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        config = tmp_path / "probe.yaml"
        config.write_text(
            "probe_id: smoke-1\nmission: FRA\noutbox: outbox.sqlite\n"
            "collector: {urls: ['http://127.0.0.1:9/'], token: not-used}\n"
            "checks:\n"
            f"  - {{id: loopback-tcp, kind: tcp, target: 127.0.0.1, "
            f"port: {listener.getsockname()[1]}, interval_s: 30}}\n")
        out = _ok([probe, "check-config", "-c", config], tmp_path)
        assert "valid, 1 check for probe smoke-1 (FRA)" in out
        out = _ok([probe, "once", "--json", "-c", config], tmp_path)
    (line,) = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert (line["check_id"], line["kind"], line["ok"]) == ("loopback-tcp", "tcp", True)

    # The probe schedules its checks itself (probes/schedule.py): no scheduler library.
    seen = _inspect(venv, tmp_path, "aiohttp", "sqlalchemy", "alembic", "babel", "jinja2",
                    "apscheduler")
    assert Path(seen["unhindered"]).is_relative_to(venv), seen
    assert "checkDown" in seen["mib"]
    assert seen["absent"] == ["aiohttp", "sqlalchemy", "alembic", "babel", "jinja2",
                              "apscheduler"], (
        "the probe's extra installs the collector's libraries, or a scheduler library")


def test_collector_extra_alone(installed, tmp_path):
    venv = _venv(installed, "collector")
    collector = venv / "bin" / "unhindered-collector"
    database = f"sqlite:///{tmp_path / 'collector.sqlite'}"

    assert "check-config" in _ok([collector, "--help"], tmp_path)
    # The example as shipped, its database (under /var/lib/unhindered) replaced.
    out = _ok([collector, "check-config", "-c", EXAMPLES / "collector.yaml",
               "--database", database], tmp_path)
    assert "valid; inventory of 195 missions" in out

    # The migrations (package data) make the database; then the registry.
    out = _ok([collector, "--database", database, "probes", "add", "--mission", "FRA",
               "--id", "fra-1"], tmp_path)
    assert "probe fra-1 (FRA) registered" in out
    out = _ok([collector, "probes", "list", "--json", "--database", database], tmp_path)
    assert json.loads(out)["state"] == "enrolling", out

    # Templates and the French catalogue (package data), Babel and Jinja2; fpdf2.
    report = tmp_path / "report.html"
    _ok([collector, "--database", database, "report", "--month", "2026-01", "--mission", "FRA",
         "--lang", "fr", "-o", report], tmp_path)
    assert "Rapport de disponibilit" in report.read_text(encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    _ok([collector, "--database", database, "report", "--month", "2026-01", "--mission", "FRA",
         "-o", pdf], tmp_path)
    assert pdf.read_bytes().startswith(b"%PDF")

    # The shipped inventory and the e-mail template.
    out = _ok([collector, "alertmanager-config", "--out", tmp_path / "am"], tmp_path)
    assert "195 missions" in out
    assert (tmp_path / "am" / "alertmanager.yml").is_file()

    seen = _inspect(venv, tmp_path)
    assert Path(seen["unhindered"]).is_relative_to(venv), seen
    assert "checkDown" in seen["mib"]
