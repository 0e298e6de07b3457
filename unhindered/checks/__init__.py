"""The check kinds' settings, one module each (like blackbox_exporter's config/ beside its
prober/): what the probe's config and the centre's check lists hold. Validating a config
imports only these, never a check's run-time code (unhindered/probing/)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from unhindered.checks.base import CheckBase
from unhindered.checks.dns import DnsCheck
from unhindered.checks.http import HttpCheck
from unhindered.checks.icmp import IcmpCheck
from unhindered.checks.tcp import TcpCheck

CheckConfig = Annotated[
    IcmpCheck | TcpCheck | HttpCheck | DnsCheck, Field(discriminator="kind")
]

__all__ = ["CheckBase", "CheckConfig", "DnsCheck", "HttpCheck", "IcmpCheck", "TcpCheck"]
