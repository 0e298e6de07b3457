"""The http check's settings: the URL, what counts as success, TLS and headers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from unhindered.checks.base import CheckBase
from unhindered.configfile import ReadFile

DEFAULT_PORTS = {"http": 80, "https": 443}

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


class HttpCheck(CheckBase):
    kind: Literal["http"] = Field(description="an HTTP(S) request; target is the URL")
    # target: the URL, http:// or https://
    method: Literal["GET", "HEAD"] = Field("GET", description="the request method")
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: list(range(200, 400)), min_length=1,
        description="statuses that count as success (of the last request of a redirect chain)",
    )
    body_regex: str | None = Field(
        None, description="regular expression searched in the body (decoded as UTF-8)"
    )
    follow_redirects: bool = Field(True, description="follow 3xx answers' Location")
    max_redirects: int = Field(5, ge=0, le=20, description="redirects followed at most")
    tls_verify: bool = Field(True, description="verify the certificate chain and name")
    ca_file: Annotated[Path | None, ReadFile()] = Field(
        None, description="PEM file of trusted CAs, replacing the system's"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra request headers; may replace Host"
    )
    server_name: str | None = Field(
        None, min_length=1, max_length=253,
        description="for the URL's own host: TLS SNI, verified name and Host header",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1, le=64 << 20, description="read at most this much of the body"
    )

    @field_validator("target")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("target must be an http:// or https:// URL with a host")
        _ = parts.port  # raises ValueError for a port out of range
        return value

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"body_regex is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
            if not text.isascii() or any(c in text for c in "\r\n\0"):
                raise ValueError(f"header {name}: the value must be ASCII on one line")
        return value

    @model_validator(mode="after")
    def _head_has_no_body(self) -> HttpCheck:
        if self.method == "HEAD" and self.body_regex is not None:
            raise ValueError("body_regex needs method GET: a HEAD answer has no body")
        return self
