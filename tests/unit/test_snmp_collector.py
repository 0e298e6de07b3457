"""The collector's SNMP pieces that need no network: DateAndTime, a polled row as a
Measurement, and the `snmp:` config section's errors."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_an_unknown_reason_reaches_the_detail_quoted_without_control_characters():
    odd = measurement_of(row(unhCheckOk=2, unhCheckFailureReason=b"cosmic\nrays\x00" * 50),
                         "fra-1", "FRA", 30)
    assert odd.reason.value == "error" and "cosmic\\x0arays\\x00" in odd.detail
    assert odd.detail.isprintable() and len(odd.detail) <= 500


def test_a_routers_interface_names_reach_the_labels_without_control_characters():
    from collector.snmp.router import IF_DESCR, IF_NAME, IF_OPER_STATUS, interfaces_of

    rows = {(1,): {IF_NAME: b"eth0\n# forged\x00", IF_OPER_STATUS: 1},
            (2,): {IF_DESCR: b"\xffwan" + b"x" * 100, IF_OPER_STATUS: 2},
            (3,): {IF_OPER_STATUS: 1}}
    assert [i.name for i in interfaces_of(rows, 64)] == [
        "eth0\\x0a# forged\\x00", ("\ufffdwan" + "x" * 100)[:64], "if3"]


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
    batch, refused = batch_of(scalars, [row(unhCheckLastSeq=7), row(unhCheckName=b"b")],
                              "fra-1", "FRA", 30)
    assert [m.seq for m in batch.measurements] == [7, 42] and batch.backlog == 3
    assert refused == []
    with pytest.raises(Exception, match="says it is probe 'ken-1'"):
        batch_of({**scalars, "unhProbeId": b"ken-1"}, [row()], "fra-1", "FRA", 30)


def test_one_bad_row_is_refused_alone_and_the_rest_of_the_poll_is_kept():
    """As over HTTP, one result the wire's rules refuse does not cost its neighbours."""
    scalars = {"unhProbeId": b"fra-1", "unhProbeMission": b"FRA",
               "unhProbeOutboxId": b"0123456789abcdef0123456789abcdef",
               "unhProbeOutboxDepth": 0}
    rows = [row(unhCheckLastSeq=7, unhCheckName=b"a"),
            row(unhCheckLastSeq=8, unhCheckName=b"bad name\x00"),  # not an identifier
            row(unhCheckLastSeq=9, unhCheckName=b"c", unhCheckKind=99),  # no such kind
            row(unhCheckLastSeq=7, unhCheckName=b"d"),  # a seq another row holds
            row(unhCheckLastSeq=10, unhCheckName=b"e")]
    batch, refused = batch_of(scalars, rows, "fra-1", "FRA", 30)
    assert [m.check_id for m in batch.measurements] == ["a", "e"]
    assert sorted(refused) == ["bad name\\x00", "c", "d"]


def test_the_agents_table_is_the_probes_check_list():
    """A walk reads the whole table: a check missing from it is one the probe no longer
    runs (retired from the poll's time). Rows before their first round, and rows the walk
    caught half-made, are in the list; a name no rule lets through is not."""
    scalars = {"unhProbeId": b"fra-1", "unhProbeMission": b"FRA",
               "unhProbeOutboxId": b"0123456789abcdef0123456789abcdef",
               "unhProbeOutboxDepth": 0}
    half_made = {"unhCheckName": b"c"}
    rows = [row(unhCheckLastSeq=7, unhCheckName=b"a"), row(unhCheckLastSeq=0, unhCheckName=b"b"),
            half_made, row(unhCheckLastSeq=8, unhCheckName=b"bad name")]
    batch, refused = batch_of(scalars, rows, "fra-1", "FRA", 30, polled_at=WHEN)
    assert batch.checks.ids == ["a", "b", "c"] and batch.checks.since == WHEN
    assert [m.check_id for m in batch.measurements] == ["a"] and refused == ["bad name"]
    without, _ = batch_of(scalars, rows, "fra-1", "FRA", 30)
    assert without.checks is None


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


# --- notification values: the rules an HTTP result is held to (issue 12, case 4) ---

def notification(name: str = "checkDown", **changes) -> tuple[tuple, list]:
    """(snmpTrapOID value, varbinds) of a notification as the receiver gets it, with
    `changes` (object name -> bytes, str or int) replacing the valid values."""
    from pysnmp.proto import rfc1902

    check = name in ("checkDown", "checkUp")
    values: dict[str, object] = {"unhProbeId": "fra-1", "unhProbeMission": "FRA"}
    if check:
        values |= {"unhCheckName": "internet-icmp", "unhCheckKind": 1,
                   "unhCheckTarget": "198.19.0.1",
                   "unhCheckState": 3 if name == "checkDown" else 1,
                   "unhCheckFailureReason": "timeout" if name == "checkDown" else "",
                   "unhCheckLastChange": date_and_time(WHEN)}
    else:
        values |= {"unhProbeAccessState": 3 if name == "accessLost" else 1,
                   "unhProbeAccessLastChange": date_and_time(WHEN)}
    values |= changes
    varbinds = []
    for obj, value in values.items():
        instance = 7 if obj.startswith("unhCheck") else 0
        syntax = (rfc1902.Integer(value) if isinstance(value, int)
                  else rfc1902.OctetString(value.encode() if isinstance(value, str) else value))
        varbinds.append(((*mib.oid(obj), instance), syntax))
    return mib.oid(name), varbinds


def test_a_valid_check_notification_decodes_to_checked_values():
    from collector.snmp.receiver import decode

    name, change, index = decode(*notification("checkDown"))
    assert (name, index) == ("checkDown", 7)
    assert (change.probe_id, change.mission, change.check_id, change.kind, change.target,
            change.state, change.reason, change.changed_at) == (
        "fra-1", "FRA", "internet-icmp", "icmp", "198.19.0.1", "down", "timeout", WHEN)
    _name, up, _index = decode(*notification("checkUp", unhCheckState=2))
    assert (up.state, up.reason) == ("degraded", None)
    _name, access, _index = decode(*notification("accessLost"))
    assert (access.probe_id, access.state, access.changed_at) == ("fra-1", "down", WHEN)
    # What HTTP accepts as a target (any text up to 255 characters) is accepted here too:
    # pages and exports escape it.
    for target in ("<b>html</b>", "t" * 255, "https://example.org/a?b=c&d=e"):
        assert decode(*notification(unhCheckTarget=target))[1].target == target


# The text rule is the control characters (C0, DEL, C1), a fixed range, not Python's
# str.isprintable(), which varies with the Unicode version of the Python running it. Hence
# a no-break space, code points unassigned today (a newer Unicode may assign them) and
# private-use ones are text on every way in alike: the first target is the one an SNMP
# fuzz test once failed on (tests/integration/test_snmp_receiver.py, failed_once).
@pytest.mark.parametrize("target", ["\u00d9\u00a0\U00042264t", "\U0006a80bA",
                                    "10\u202f% \u00bb", "\ue000private"])
def test_http_snmp_and_a_probes_config_take_the_same_targets(target):
    from collector.snmp.receiver import decode
    from unhindered.checks.icmp import IcmpCheck
    from unhindered.measurement import read_measurement

    assert not target.isprintable()
    result = {"seq": 1, "probe_id": "fra-1", "mission": "FRA", "check_id": "internet-icmp",
              "kind": "icmp", "target": target, "started_at": "2026-11-29T09:30:15Z",
              "duration_s": 2.0, "ok": False, "reason": "timeout",
              "figures": {"sent": 1, "received": 0, "loss_ratio": 1}}
    assert read_measurement(json.dumps(result)).target == target  # HTTP
    assert decode(*notification(unhCheckTarget=target))[1].target == target  # SNMP
    assert IcmpCheck(id="gw", kind="icmp", target=target).target == target  # config


HOSTILE = [
    ("unhCheckName", ""), ("unhCheckName", "c" * 5_000), ("unhCheckName", "a\x00b"),
    ("unhCheckName", "<script>alert(1)</script>"), ("unhCheckName", "a\nb"),
    ("unhCheckName", b"\xff\xfe"), ("unhProbeId", "fra-1\n"), ("unhProbeMission", "fra"),
    ("unhProbeMission", "FRA\r\nINFO forged"), ("unhCheckTarget", ""),
    ("unhCheckTarget", "t" * 256), ("unhCheckTarget", "198.19.0.1\x00"),
    ("unhCheckTarget", "x\n2026-01-01 INFO forged line"), ("unhCheckTarget", "\x1b[31mred"),
    ("unhCheckFailureReason", "cosmic rays"), ("unhCheckFailureReason", "timeout\n"),
    ("unhCheckFailureReason", ""),  # a checkDown says why
    ("unhCheckState", 1),  # a checkDown is a change to down
    ("unhCheckState", 4), ("unhCheckKind", 9), ("unhCheckLastChange", b"\x07\xea"),
    ("unhCheckLastChange", date_and_time(datetime(1999, 12, 31, tzinfo=UTC))),  # pre-2000
]


@pytest.mark.parametrize(("obj", "value"), HOSTILE)
def test_a_value_that_http_would_refuse_makes_the_notification_malformed(obj, value):
    from collector.snmp.receiver import Malformed, decode

    with pytest.raises(Malformed) as caught:
        decode(*notification("checkDown", **{obj: value}))
    message = str(caught.value)
    # Said safely for the log: the object named, the value quoted, short, and no control
    # character (a newline would forge a log line).
    assert obj in message
    assert len(message) <= 300, message
    assert not any(ord(c) < 32 or ord(c) == 127 for c in message), message


@pytest.mark.parametrize(("name", "changes"), [
    ("checkUp", {"unhCheckFailureReason": "timeout"}),  # success has no failure reason
    ("checkUp", {"unhCheckState": 3}),
    ("accessLost", {"unhProbeAccessState": 1}),
    ("accessRestored", {"unhProbeAccessState": 3}),
    ("accessRestored", {"unhProbeMission": "FRA\n"}),
])
def test_state_and_reason_must_fit_the_notification(name, changes):
    from collector.snmp.receiver import Malformed, decode

    with pytest.raises(Malformed):
        decode(*notification(name, **changes))


# --- check-config reads the key files as run does (issue 12) ---

RECEIVER_WITH_FILES = """\
snmp:
  receiver:
    senders:
      - probe_id: fra-1
        user: {name: fra1, auth_key_file: fra1.auth, priv_key_file: fra1.priv}
      - probe_id: ken-1
        community: ken-secret
"""


@pytest.mark.parametrize(("change", "expected"), [
    (("fra1.auth", "short\n"),
     "line 5: snmp.receiver.senders[0].user.auth_key_file: the pass phrase in it needs at "
     "least 8 characters"),
    (("fra1.priv", ""),
     "line 5: snmp.receiver.senders[0].user.priv_key_file: the pass phrase in it needs"),
    (("config", ("community: ken-secret", "community: public")),
     "line 6: snmp.receiver.senders[1]: the community must not be public"),
])
def test_check_config_refuses_what_run_would(tmp_path, change, expected):
    for name, key in (("fra1.auth", "auth-pass-phrase\n"), ("fra1.priv", "priv-pass-phrase\n")):
        (tmp_path / name).write_text(key)
        (tmp_path / name).chmod(0o600)  # key files open to others are refused
    text = RECEIVER_WITH_FILES
    name, content = change
    if name == "config":
        text = text.replace(*content)
    else:
        (tmp_path / name).write_text(content)
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(path),
                           "check-config"], capture_output=True, text=True)
    assert done.returncode == 2, done.stdout
    assert str(path) in done.stderr and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "short" not in done.stderr


def test_check_config_passes_good_key_files(tmp_path):
    for name, key in (("fra1.auth", "auth-pass-phrase\n"), ("fra1.priv", "priv-pass-phrase\n")):
        (tmp_path / name).write_text(key)
        (tmp_path / name).chmod(0o600)  # key files open to others are refused
    path = tmp_path / "collector.yaml"
    path.write_text(RECEIVER_WITH_FILES)
    done = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(path),
                           "check-config"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    sender = load(path).snmp.receiver.senders[0]
    assert sender.user.keys() == ("auth-pass-phrase", "priv-pass-phrase")
