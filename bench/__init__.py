"""Benchmarks (run on demand, not part of the test suite): `python -m bench`.

See docs/benchmarks.md. The probe parts (rtt, footprint, sweep) build their own network
lab (tests/support/lab/netns.py), so they need root, `ip` and `nft`, and packets only ever go to
addresses of the lab's namespaces; the collector parts (ingest, render) use loopback only.
"""
