"""How a round's replies become figures: statistics, RFC 3550 jitter, reasons."""

import asyncio

import pytest

from unhindered.checks.icmp import IcmpCheck
from unhindered.probing.icmp import _outcome, _Request, _Round

CHECK = IcmpCheck(id="c", kind="icmp", target="192.0.2.1", count=4, timeout_s=1)


def round_of(*results) -> _Round:
    loop = asyncio.get_running_loop()
    rnd = _Round()
    for value in results:
        request = _Request("192.0.2.1", 0, 0, loop.create_future())
        if value is not None:
            request.future.set_result(value)
        rnd.requests.append(request)
    return rnd


async def test_statistics_and_missing_samples():
    rnd = round_of(30_000_000, None, 10_000_000, 20_000_000)  # ns; one lost
    figures = _outcome(CHECK, 4, rnd, {}).figures
    assert (figures.sent, figures.received, figures.loss_ratio) == (4, 3, 0.25)
    assert figures.samples_s == [0.01, 0.02, 0.03]
    assert (figures.rtt_min_s, figures.rtt_median_s, figures.rtt_max_s) == (0.01, 0.02, 0.03)
    assert figures.rtt_mean_s == pytest.approx(0.02)
    assert figures.rtt_stddev_s == pytest.approx((2 / 3) ** 0.5 * 0.01)


async def test_rfc3550_jitter_runs_across_rounds():
    jitter: dict[str, float] = {}
    # Send order 30, 10, 20 ms: |D| = 20 ms then 10 ms.
    first = _outcome(CHECK, 4, round_of(30_000_000, 10_000_000, 20_000_000), jitter)
    expected = 0.0 + (0.020 - 0.0) / 16
    expected += (0.010 - expected) / 16
    assert first.figures.jitter_s == pytest.approx(expected)
    # The next round continues from that estimate rather than starting again at zero.
    second = _outcome(CHECK, 4, round_of(10_000_000, 10_000_000), jitter)
    assert second.figures.jitter_s == pytest.approx(expected + (0 - expected) / 16)
    lonely = _outcome(IcmpCheck(id="new", kind="icmp", target="192.0.2.1"), 4,
                      round_of(10_000_000), jitter)
    assert lonely.figures.jitter_s is None  # one reply gives no difference yet


async def test_reasons():
    assert _outcome(CHECK, 4, round_of(None, None), {}).reason == "timeout"
    unreachable = _outcome(CHECK, 4, round_of("destination unreachable from 192.0.2.9"), {})
    assert (unreachable.reason, unreachable.detail) == (
        "unreachable", "destination unreachable from 192.0.2.9")
    local = _outcome(CHECK, 4, round_of("send failed: Operation not permitted"), {})
    assert local.reason == "error"
    late = _outcome(CHECK, 4, round_of(1_500_000_000), {})  # after the 1 s timeout
    assert late.reason == "timeout" and late.figures.received == 0
