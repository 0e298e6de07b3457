"""What the probe loads at start: nothing heavy it does not use."""

import json
import subprocess
import sys


def test_probe_start_imports_nothing_heavy_it_does_not_use():
    code = ("import json, sys; import probes.app, probes.cli; "
            "print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, check=True).stdout)
    # aiohttp (13 MiB) is the collector's; cryptography (8 MiB) only when a TLS check runs.
    heavy = ("scapy", "sqlalchemy", "collector", "aiohttp", "cryptography")
    assert not [m for m in modules if m.split(".")[0] in heavy]
