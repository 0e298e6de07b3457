"""What the probe loads at start: nothing heavy it does not use."""

import json
import subprocess
import sys


def test_probe_start_imports_no_scapy_and_no_collector():
    code = ("import json, sys; import probes.app, probes.cli; "
            "print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, check=True).stdout)
    assert not [m for m in modules if m.split(".")[0] in ("scapy", "sqlalchemy", "collector")]
