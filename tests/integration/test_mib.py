"""UNHINDERED-MIB: valid SMIv2 for smilint, loadable by net-snmp from the shipped
directories, laid out as agreed with the collector's side, and compiled for pysnmp by the
build hook into the same OIDs net-snmp reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import require_program
from unhindered.snmp import mibs
from unhindered.snmp.mibcompile import compile_mib

ROOT = Path(__file__).resolve().parents[2]
MIB = ROOT / "mibs" / "UNHINDERED-MIB"
IETF = ROOT / "mibs" / "ietf"
E = "1.3.6.1.4.1.32473"

# The layout agreed between the probe's and the collector's SNMP work (docs/snmp.md).
LAYOUT = {
    "unhinderedMIB": E, "unhNotifications": f"{E}.0",
    "checkDown": f"{E}.0.1", "checkUp": f"{E}.0.2",
    "accessLost": f"{E}.0.3", "accessRestored": f"{E}.0.4",
    "unhObjects": f"{E}.1", "unhProbe": f"{E}.1.1",
    **{name: f"{E}.1.1.{i}" for i, name in enumerate((
        "unhProbeVersion", "unhProbeUptime", "unhProbeId", "unhProbeMission",
        "unhProbeOutboxDepth", "unhProbeLastAckTime", "unhProbeLastAckSeq",
        "unhProbeOutboxId", "unhProbeAccessState", "unhProbeAccessLastChange"), start=1)},
    "unhCheckTable": f"{E}.1.2", "unhCheckEntry": f"{E}.1.2.1",
    **{name: f"{E}.1.2.1.{i}" for i, name in enumerate((
        "unhCheckIndex", "unhCheckName", "unhCheckKind", "unhCheckTarget", "unhCheckState",
        "unhCheckRttMedian", "unhCheckRttMin", "unhCheckRttMax", "unhCheckLoss",
        "unhCheckJitter", "unhCheckLastChange", "unhCheckFailureReason",
        "unhCheckLastRound", "unhCheckGroup", "unhCheckLastSeq", "unhCheckOk"), start=1)},
    "unhConformance": f"{E}.2", "unhCompliances": f"{E}.2.1", "unhGroups": f"{E}.2.2",
}
NOTIFICATION_OBJECTS = {
    "checkDown": ["unhProbeId", "unhProbeMission", "unhCheckName", "unhCheckKind",
                  "unhCheckTarget", "unhCheckState", "unhCheckFailureReason",
                  "unhCheckLastChange"],
    "accessLost": ["unhProbeId", "unhProbeMission", "unhProbeAccessState",
                   "unhProbeAccessLastChange"],
}
NOTIFICATION_OBJECTS["checkUp"] = NOTIFICATION_OBJECTS["checkDown"]
NOTIFICATION_OBJECTS["accessRestored"] = NOTIFICATION_OBJECTS["accessLost"]


def smilint(mib: Path) -> subprocess.CompletedProcess:
    program = require_program("smilint", "smitools")
    # smilint exits 0 even on errors: what it prints is the verdict.
    return subprocess.run([program, "-s", "-l", "6", str(mib)], capture_output=True, text=True,
                          env={**os.environ, "SMIPATH": str(IETF)})


def net_snmp_oids(names: list[str]) -> dict[str, str]:
    program = require_program("snmptranslate", "snmp")
    done = subprocess.run(
        [program, "-M", f"{MIB.parent}:{IETF}", "-m", "UNHINDERED-MIB", "-On",
         *(f"UNHINDERED-MIB::{n}" for n in names)],
        capture_output=True, text=True, check=True)
    return dict(zip(names, (line.lstrip(".") for line in done.stdout.split()), strict=True))


def test_smilint_at_level_6_prints_nothing():
    done = smilint(MIB)
    assert (done.stdout, done.stderr) == ("", "")


def test_smilint_does_report_a_broken_copy(tmp_path):
    """The test above can fail: an object left out of every group is reported."""
    broken = tmp_path / "UNHINDERED-MIB"
    broken.write_text(MIB.read_text().replace("unhCheckLastSeq,\n                   unhCheckOk }",
                                              "unhCheckLastSeq }"))
    assert broken.read_text() != MIB.read_text()
    assert "unhCheckOk" in smilint(broken).stdout + smilint(broken).stderr


def test_last_updated_is_the_newest_revision():
    text = MIB.read_text()
    last_updated = re.search(r'LAST-UPDATED\s+"(\d{12}Z)"', text).group(1)
    revisions = re.findall(r'REVISION\s+"(\d{12}Z)"', text)
    assert revisions and last_updated == max(revisions)


def test_snmptranslate_loads_it_from_the_shipped_directories():
    program = require_program("snmptranslate", "snmp")
    done = subprocess.run([program, "-M", f"{MIB.parent}:{IETF}", "-m", "UNHINDERED-MIB",
                           "-Tp"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Cannot find module" not in done.stderr and "Unlinked OID" not in done.stderr
    assert "+--unhCheckEntry(1)" in done.stdout
    assert "Index: unhCheckIndex" in done.stdout


def test_net_snmp_reads_the_agreed_layout():
    assert net_snmp_oids(list(LAYOUT)) == LAYOUT


def test_notifications_carry_the_agreed_objects():
    program = require_program("snmptranslate", "snmp")
    for notification, objects in NOTIFICATION_OBJECTS.items():
        done = subprocess.run([program, "-M", f"{MIB.parent}:{IETF}", "-m", "UNHINDERED-MIB",
                               "-Td", f"UNHINDERED-MIB::{notification}"],
                              capture_output=True, text=True, check=True)
        listed = re.search(r"OBJECTS\s*\{(.*?)\}", done.stdout, re.S).group(1)
        assert [o.strip() for o in listed.split(",")] == objects


def test_the_built_module_is_current_and_agrees_with_net_snmp(tmp_path):
    """The installed compiled module is what the MIB compiles to now (setup.py ran after
    the last MIB change), and pysnmp resolves every name to net-snmp's OID."""
    fresh = compile_mib(output=tmp_path)

    def code(path: Path) -> list[str]:  # the header comment names the date and the host
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert code(fresh) == code(mibs.DIRECTORY / "UNHINDERED-MIB.py")

    from pysnmp.smi.builder import MibBuilder

    builder = MibBuilder()
    mibs.add_to(builder)
    symbols = builder.import_symbols("UNHINDERED-MIB", *LAYOUT)
    assert {n: ".".join(map(str, s.getName())) for n, s in zip(LAYOUT, symbols, strict=True)} \
        == LAYOUT
    for notification, objects in NOTIFICATION_OBJECTS.items():
        (symbol,) = builder.import_symbols("UNHINDERED-MIB", notification)
        assert [name for _module, name in symbol.getObjects()] == objects


def test_a_mib_error_fails_the_build(tmp_path):
    source = tmp_path / "mibs"
    source.mkdir()
    (source / "UNHINDERED-MIB").write_text(MIB.read_text().replace("::= { unhProbe 3 }", ""))
    with pytest.raises(Exception, match="UNHINDERED-MIB"):
        compile_mib(output=tmp_path / "out", sources=(source, IETF))
    assert not (tmp_path / "out" / "UNHINDERED-MIB.py").exists()


def source_tree(tmp_path: Path) -> Path:
    """A copy of what a build reads, without any compiled module."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    ignore = shutil.ignore_patterns("__pycache__", "UNHINDERED-MIB.py", "*.egg-info")
    for name in ("mibs", "unhindered", "probes", "collector"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    return tree


@pytest.mark.slow
def test_a_wheel_carries_the_compiled_module(tmp_path):
    """The build hook runs for a plain wheel build from a copy of the tree that has no
    compiled module yet."""
    tree = source_tree(tmp_path)
    assert not (tree / "unhindered" / "snmp" / "mibs" / "UNHINDERED-MIB.py").exists()
    # In pip's isolated build environment, as a user's install does it: setuptools and
    # pysmi come from [build-system] requires.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "-w", str(tmp_path / "dist"), str(tree)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("unhindered-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        compiled = archive.read("unhindered/snmp/mibs/UNHINDERED-MIB.py").decode()
    assert "checkDown" in compiled and "32473" in compiled



@pytest.mark.slow
def test_an_editable_install_compiles_it_into_the_tree(tmp_path):
    tree = source_tree(tmp_path)
    compiled = tree / "unhindered" / "snmp" / "mibs" / "UNHINDERED-MIB.py"
    assert not compiled.exists()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                           "install", "-q", "--no-deps", "-e", str(tree)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "checkDown" in compiled.read_text()
