"""The collector's SNMP pieces that need no network: DateAndTime, a polled row as a
Measurement, and the `snmp:` config section's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from collector.config import load
from collector.snmp import mib
from collector.snmp.poller import batch_of, measurement_of
from unhindered.configfile import ConfigError
from unhindered.snmp.values import date_and_time

WHEN = datetime(2026, 11, 29, 9, 30, 15, 700_000, tzinfo=UTC)


def test_date_and_time_round_trips_with_the_probes_encoder():
    assert mib.date_and_time(date_and_time(WHEN)) == WHEN


def test_date_and_time_with_an_offset_and_the_short_form():
    plus_two = WHEN.astimezone(timezone(timedelta(hours=2)))
    octets = (plus_two.year.to_bytes(2, "big")
              + bytes([plus_two.month, plus_two.day, plus_two.hour, plus_two.minute,
                       plus_two.second, 7]) + b"+\x02\x00")
    assert mib.date_and_time(octets) == WHEN
    assert mib.date_and_time(octets[:8]) == WHEN + timedelta(hours=2)  # no zone: as UTC


@pytest.mark.parametrize("octets", [
    b"", b"\x07\xea\x0b",
    b"\x07\xea\x0b\x1d\x09\x1e\x0f\x07*\x00\x00",  # '*' is no UTC offset sign
    b"\x07\xea\x0d\x1d\x09\x1e\x0f\x07",  # month 13
])
def test_date_and_time_refuses_garbage(octets):
    with pytest.raises(ValueError):
        mib.date_and_time(octets)


def row(**changes) -> dict:
    base = {
        "unhCheckName": b"internet-icmp", "unhCheckKind": 1, "unhCheckTarget": b"198.19.0.1",
        "unhCheckState": 1, "unhCheckRttMedian": 12_000, "unhCheckRttMin": 11_000,
        "unhCheckRttMax": 15_000, "unhCheckLoss": 200, "unhCheckJitter": 500,
        "unhCheckLastChange": date_and_time(WHEN), "unhCheckFailureReason": b"",
        "unhCheckLastRound": date_and_time(WHEN), "unhCheckGroup": b"documents",
        "unhCheckLastSeq": 42, "unhCheckOk": 1,
    }
    return {**base, **changes}


def test_an_icmp_row_becomes_projected_figures():
    m = measurement_of(row(), "fra-1", "FRA", 30)
    assert (m.seq, m.check_id, m.kind, m.group, m.target, m.started_at, m.ok) == (
        42, "internet-icmp", "icmp", "documents", "198.19.0.1", WHEN, True)
    f = m.figures
    assert f.projected and (f.sent, f.received, f.loss_ratio) == (5, 4, 0.2)
    assert (f.rtt_min_s, f.rtt_median_s, f.rtt_max_s, f.jitter_s) == pytest.approx(
        (0.011, 0.012, 0.015, 0.0005))
    assert f.samples_s == [] and f.rtt_mean_s is None
    assert m.interval_s == 30


def test_a_failed_row_keeps_its_reason_and_has_no_rtt():
    m = measurement_of(row(unhCheckOk=2, unhCheckLoss=1000, unhCheckRttMedian=0,
                           unhCheckFailureReason=b"timeout"), "fra-1", "FRA", 30)
    assert (m.ok, m.reason.value, m.figures.received, m.figures.rtt_median_s) == (
        False, "timeout", 0, None)
    odd = measurement_of(row(unhCheckOk=2, unhCheckFailureReason=b"cosmic rays"),
                         "fra-1", "FRA", 30)
    assert odd.reason.value == "error" and "cosmic rays" in odd.detail


def test_one_attempt_kinds_carry_their_time():
    tcp = measurement_of(row(unhCheckKind=2, unhCheckLoss=0), "fra-1", "FRA", 30)
    http = measurement_of(row(unhCheckKind=3, unhCheckLoss=0), "fra-1", "FRA", 30)
    assert tcp.figures.connect_s == pytest.approx(0.012)
    assert http.figures.first_byte_s == pytest.approx(0.012)


def test_a_row_before_the_first_round_is_skipped_and_the_agent_must_be_the_probe():
    assert measurement_of(row(unhCheckLastSeq=0), "fra-1", "FRA", 30) is None
    scalars = {"unhProbeId": b"fra-1", "unhProbeMission": b"FRA",
               "unhProbeOutboxId": b"0123456789abcdef0123456789abcdef",
               "unhProbeOutboxDepth": 3}
    batch = batch_of(scalars, [row(unhCheckLastSeq=7), row(unhCheckName=b"b")], "fra-1",
                     "FRA", 30)
    assert [m.seq for m in batch.measurements] == [7, 42] and batch.backlog == 3
    with pytest.raises(Exception, match="says it is probe 'ken-1'"):
        batch_of({**scalars, "unhProbeId": b"ken-1"}, [row()], "fra-1", "FRA", 30)


@pytest.mark.parametrize(("snmp", "expected"), [
    ("  receiver:\n    senders:\n      - probe_id: fra-1\n        community: public\n",
     "line 4: snmp.receiver.senders[0]: Value error, the community must not be public"),
    ("  routers:\n    - {mission: FRA, name: gw, address: 198.18.1.2}\n",
     "line 3: snmp.routers[0]: give exactly one of community (SNMPv2c) or user (SNMPv3)"),
    ("  routers:\n    - {mission: FRA, name: gw, address: gw.example, community: x}\n",
     "line 3: snmp.routers[0].address: expected an IP address (no host names"),
    ("  probes:\n    - {probe_id: fra-1, mission: FRA, address: 198.18.1.2, community: x,"
     " interval_s: 0}\n",
     "line 3: snmp.probes[0].interval_s: Input should be greater than or equal to 1"),
])
def test_config_errors_name_file_line_and_field(tmp_path, snmp, expected):
    path = tmp_path / "collector.yaml"
    path.write_text("snmp:\n" + snmp)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert expected.replace("Value error, ", "") in str(caught.value)
