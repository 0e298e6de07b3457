"""The README's two commands work from a fresh clone, in a new virtualenv."""

import re
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README has no quick start block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    _demo, test = quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^exec {re.escape(test)}\b", ci, re.M)


def test_readme_commands_succeed_from_a_fresh_clone(tmp_path):
    demo, test = quick_start_commands()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    shown = subprocess.run(f"{demo} --seconds 12 --port {port}", shell=True, cwd=clone,
                           capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    assert f"https://127.0.0.1:{port}/metrics" in shown.stdout  # over TLS, its own CA
    # Each demo mission shows a working check and the deliberately refused one.
    for mission in ("FRA", "KEN", "BRA"):
        assert re.search(rf"{mission}\s+internet-tcp\s+up\s+connect", shown.stdout)
        assert re.search(rf"{mission}\s+documents-tcp\s+down\s+refused", shown.stdout)

    # The test command (it installs what the tests need, lints, runs pytest), limited to
    # one test file: the whole suite is what runs this test.
    tested = subprocess.run(f"{test} tests/unit/test_imports.py -q -p no:cacheprovider",
                            shell=True, cwd=clone,
                            capture_output=True, text=True, timeout=900)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    assert re.search(r"\d+ passed", tested.stdout)
