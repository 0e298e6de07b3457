"""Uptime reports (docs/reports.md): a period and a counting policy in (period.py,
policy.py), the figures computed from state intervals and rollups (compute.py), written
as CSV, JSON, HTML or PDF (formats.py, html.py, pdf.py, with the charts of charts.py)."""
