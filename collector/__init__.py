"""The collector: ingest (HTTP, SNMP) -> store -> state -> metrics, alerts, pages, reports.
docs/architecture.md follows one measurement through these folders."""

from pathlib import Path

# The Jinja templates (status page, report, Alertmanager e-mails) and the page's CSS.
TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
