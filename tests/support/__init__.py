"""Helpers shared by the integration and lab tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def require_program(program: str, package: str) -> str:
    """The path of a program from a Debian package, installing the package when we can.
    Tests that need it fail when root could not install it; others skip, saying why."""
    path = shutil.which(program)
    if path:
        return path
    if os.geteuid() != 0:
        pytest.skip(f"{program} is missing and only root can install the Debian package "
                    f"{package}: run 'apt-get install {package}' or the tests as root")
    done = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True,
                          text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    path = shutil.which(program)
    if not path:
        pytest.fail(f"apt-get install {package} did not provide {program}: {done.stderr[-500:]}")
    return path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """An ephemeral port free on the host's loopback now, TCP or (SOCK_DGRAM) UDP; in a
    fresh lab namespace nothing else listens, so it is free there as well."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Polls until predicate() returns something truthy; fails the test saying what it
    waited for."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # e.g. a server not yet listening
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else ""))


async def scrape_until(client, *expected: str, within_s: float = 10.0) -> str:
    """GET /metrics from an aiohttp test client until it holds every expected line.
    The collector serves bytes rendered up to a couple of seconds ahead (RenderedMetrics),
    so a result just posted shows on a later scrape."""
    deadline = time.monotonic() + within_s
    while True:
        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
        if all(line in text for line in expected) or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.2)
