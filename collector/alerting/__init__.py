"""Alerting: the Alertmanager configuration and silences from the inventory, and the
collector's direct alerts to Alertmanager (docs/alerts.md)."""
