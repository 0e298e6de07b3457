"""The collector's SNMP side: notification receiver, probe-agent and router pollers
(docs/snmp-collector.md)."""
