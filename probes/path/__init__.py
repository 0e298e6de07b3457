"""Path recording (docs/path.md): when a check's failure is confirmed, and once a day as a
baseline, the probe records the path to the check's target. The recording itself
(trace.py, scapy) runs in a short-lived subprocess, `python -m probes.path`; the probe's
side (runner.py) decides when, starts it with a hard timeout and attaches the result to
the check's next measurement. Nothing here but trace.py imports scapy."""
