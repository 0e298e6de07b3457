"""The pieces that bound what anyone who reaches the collector's port may cost it: the
settings, the per-source enrollment buckets, the log's rate limit and the descriptor budget
(docs/security.md). Served end to end in tests/integration/test_limits.py."""

from __future__ import annotations

import logging

import pytest

from collector import config as collector_config
from collector.web.limits import SourceBuckets
from collector.web.serve import NOFILE_RESERVE, RateLimitedLog, connections_allowed
from unhindered.configfile import ConfigError


def test_limits_have_the_documented_defaults():
    limits = collector_config.CollectorConfig().limits
    assert (limits.max_connections, limits.header_timeout_s, limits.keepalive_timeout_s,
            limits.body_timeout_s, limits.enroll_per_minute) == (1024, 10, 30, 30, 10)


@pytest.mark.parametrize("setting, value, expectation", [
    ("max_connections", 0, "greater than or equal to 16"),
    ("header_timeout_s", 0, "greater than 0"),
    ("keepalive_timeout_s", -1, "greater than 0"),
    ("body_timeout_s", 0, "greater than 0"),
    ("enroll_per_minute", 0, "greater than or equal to 1"),
    ("colour", "red", "unknown setting"),
])
def test_bad_limits_are_refused_naming_the_field(tmp_path, setting, value, expectation):
    path = tmp_path / "collector.yaml"
    path.write_text(f"limits:\n  {setting}: {value}\n")
    with pytest.raises(ConfigError) as caught:
        collector_config.load(path)
    assert f"limits.{setting}:" in str(caught.value)
    assert expectation in str(caught.value)


def test_an_enrollment_bucket_allows_a_burst_then_one_per_interval():
    buckets = SourceBuckets(per_minute=6)
    assert [buckets.take("192.0.2.1", 100.0) for _ in range(6)] == [0.0] * 6
    assert buckets.take("192.0.2.1", 100.0) == pytest.approx(10.0)  # 6 a minute: one per 10 s
    assert buckets.take("192.0.2.2", 100.0) == 0.0  # another source has its own bucket
    assert buckets.take("192.0.2.1", 104.0) == pytest.approx(6.0)  # refused tries cost nothing
    assert buckets.take("192.0.2.1", 110.0) == 0.0
    assert buckets.take("192.0.2.1", 110.0) == pytest.approx(10.0)


def test_an_ipv6_source_is_its_64_since_one_host_has_a_whole_64():
    buckets = SourceBuckets(per_minute=1)
    assert buckets.take("2001:db8::1", 0.0) == 0.0
    assert buckets.take("2001:db8::ffff:1", 0.0) > 0  # same /64
    assert buckets.take("2001:db8:0:1::1", 0.0) == 0.0  # the next /64
    assert buckets.take("::ffff:192.0.2.1", 0.0) == 0.0  # IPv4-mapped: the IPv4 address
    assert buckets.take("192.0.2.1", 0.0) > 0


def test_the_sources_remembered_are_bounded():
    buckets = SourceBuckets(per_minute=1, max_sources=3)
    for n in range(10):
        buckets.take(f"192.0.2.{n}", 0.0)
    assert len(buckets) == 3
    assert buckets.take("192.0.2.9", 0.0) > 0  # the newest are kept


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def flood_logger():
    logger = logging.getLogger("tests.unit.test_limits.flood")
    records = Records()
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, records
    logger.removeHandler(records)
    logger.filters.clear()


def test_a_repeated_message_is_logged_a_few_times_a_minute_then_counted(flood_logger):
    logger, records = flood_logger
    now = [0.0]
    logger.addFilter(RateLimitedLog(per_minute=3, clock=lambda: now[0]))
    for n in range(10):
        logger.error("socket.accept() out of system resource\nsocket: %s", n)
        logger.info("closed %d connections", n)  # another message: counted apart
    assert records.lines[:2] == ["socket.accept() out of system resource\nsocket: 0",
                                 "closed 0 connections"]
    assert len(records.lines) == 6
    now[0] = 61.0
    logger.error("socket.accept() out of system resource\nsocket: %s", 10)
    assert records.lines[-1] == ("socket.accept() out of system resource\nsocket: 10\n"
                                 "(7 more like this in the last 61 s were not logged)")


def test_connections_are_kept_within_the_descriptor_limit():
    assert connections_allowed(1024, soft_nofile=65_536) == 1024
    assert connections_allowed(1024, soft_nofile=1024) == 1024 - NOFILE_RESERVE
    assert connections_allowed(1024, soft_nofile=NOFILE_RESERVE) == 16  # never none at all
