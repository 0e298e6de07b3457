"""The tcp check's settings: connect to target:port, optionally a TLS handshake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from unhindered.checks.base import CheckBase
from unhindered.configfile import ReadFile


class TcpCheck(CheckBase):
    kind: Literal["tcp"] = Field(description="a TCP connection, optionally a TLS handshake")
    port: int = Field(ge=1, le=65_535, description="the TCP port to connect to")
    tls: bool = Field(False, description="do a TLS handshake after connecting")
    server_name: str | None = Field(
        None, min_length=1, max_length=253,
        description="TLS: name sent as SNI and verified; default the target",
    )
    tls_verify: bool = Field(True, description="TLS: verify the chain and the name")
    ca_file: Annotated[Path | None, ReadFile()] = Field(
        None, description="TLS: PEM file of trusted CAs, replacing the system's"
    )

    @model_validator(mode="after")
    def _tls_fields_need_tls(self) -> TcpCheck:
        # Silently ignoring them would leave an operator believing TLS is checked.
        if not self.tls and (self.server_name or self.ca_file or not self.tls_verify):
            raise ValueError("server_name, ca_file and tls_verify need tls: true")
        return self
