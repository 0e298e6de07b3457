import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from unhindered.measurement import (
    Ack,
    Batch,
    CheckList,
    IcmpFigures,
    Measurement,
    clean_text,
    encode_batch,
    encode_result,
    read_batch,
    read_measurement,
    with_seq,
)

measurement = TypeAdapter(Measurement)


def icmp(**overrides):
    data = {
        "seq": 1, "probe_id": "fra-1", "mission": "FRA", "check_id": "internet-icmp",
        "kind": "icmp", "target": "198.19.0.1", "started_at": "2026-01-15T10:00:00Z",
        "duration_s": 2.1, "ok": True,
        "figures": {"sent": 3, "received": 2, "loss_ratio": 1 / 3, "rtt_min_s": 0.02,
                    "rtt_median_s": 0.021, "rtt_mean_s": 0.021, "rtt_max_s": 0.022,
                    "rtt_stddev_s": 0.001, "samples_s": [0.02, 0.022]},
    }
    data.update(overrides)
    return data


def test_round_trip_keeps_every_field():
    m = measurement.validate_python(icmp())
    again = measurement.validate_json(m.model_dump_json())
    assert again == m
    assert again.figures.samples_s == [0.02, 0.022]


def test_a_batch_spliced_from_stored_results_decodes_to_the_same_measurements():
    stored = [encode_result(measurement.validate_python(icmp(seq=seq, ok=False,
                                                              reason="timeout")))
              for seq in (7, 8)]
    assert all('"seq"' not in text for text in stored)
    text = encode_batch("fra-1", "FRA", "0" * 32, 3,
                        [with_seq(seq, body) for seq, body in zip((7, 8), stored, strict=True)])
    batch = Batch.model_validate_json(text)
    assert (batch.probe_id, batch.mission, batch.backlog) == ("fra-1", "FRA", 3)
    assert [m.seq for m in batch.measurements] == [7, 8]
    assert batch.measurements[1] == measurement.validate_python(icmp(seq=8, ok=False,
                                                                     reason="timeout"))


def test_times_are_normalised_to_utc():
    paris = timezone(timedelta(hours=1))
    m = measurement.validate_python(icmp(started_at=datetime(2026, 11, 29, 11, tzinfo=paris)))
    assert m.started_at == datetime(2026, 11, 29, 10, tzinfo=UTC)
    assert m.started_at.utcoffset() == timedelta(0)


def test_naive_time_is_refused():
    with pytest.raises(ValidationError, match="timezone"):
        measurement.validate_python(icmp(started_at="2026-11-29T10:00:00"))


def test_lost_packets_are_missing_samples_not_zeros():
    with pytest.raises(ValidationError, match="samples"):
        IcmpFigures(sent=3, received=2, loss_ratio=1 / 3, rtt_min_s=0, rtt_median_s=0,
                    rtt_mean_s=0, rtt_max_s=0, samples_s=[0.0, 0.02, 0.02])
    total_loss = IcmpFigures(sent=3, received=0, loss_ratio=1.0)
    assert total_loss.rtt_median_s is None


@pytest.mark.parametrize("figures, message", [
    ({"sent": 2, "received": 3, "loss_ratio": 0, "samples_s": [1, 1, 1]}, "exceeds"),
    ({"sent": 4, "received": 0, "loss_ratio": 0.5}, "loss_ratio"),
    ({"sent": 1, "received": 0, "loss_ratio": 1.5}, "less than or equal"),
    ({"sent": 1, "received": 0, "loss_ratio": 1, "rtt_median_s": 0.1}, "absent"),
    ({"sent": 1, "received": 1, "loss_ratio": 0, "samples_s": [-0.1],
      "rtt_min_s": 0.1, "rtt_median_s": 0.1, "rtt_mean_s": 0.1, "rtt_max_s": 0.1},
     "greater than or equal"),
])
def test_inconsistent_figures_are_refused(figures, message):
    with pytest.raises(ValidationError, match=message):
        IcmpFigures(**figures)


def test_failure_reason_iff_failed():
    with pytest.raises(ValidationError, match="needs a failure reason"):
        measurement.validate_python(icmp(ok=False))
    with pytest.raises(ValidationError, match="no failure reason"):
        measurement.validate_python(icmp(reason="timeout"))
    with pytest.raises(ValidationError, match="reason"):
        measurement.validate_python(icmp(ok=False, reason="gremlins"))


def test_unknown_kind_and_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        measurement.validate_python(icmp(kind="carrier-pigeon"))
    with pytest.raises(ValidationError, match="Extra inputs"):
        measurement.validate_python(icmp(colour="blue"))


def batch(*seqs, **overrides):
    data = {"protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
            "measurements": [icmp(seq=s) for s in seqs]}
    data.update(overrides)
    return data


def test_batch_needs_increasing_seqs_from_its_own_probe():
    assert len(Batch.model_validate(batch(1, 2, 5)).measurements) == 3
    with pytest.raises(ValidationError, match="increase"):
        Batch.model_validate(batch(2, 1))
    with pytest.raises(ValidationError, match="names probe"):
        Batch.model_validate(batch(1, mission="KEN"))
    with pytest.raises(ValidationError, match="at least 1"):
        Batch.model_validate(batch())


# --- what the wire refuses, whoever sends it (issue 12) ---

@pytest.mark.parametrize("field", ["detail", "target"])
@pytest.mark.parametrize("char", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85"])
def test_free_text_holds_no_control_character(field, char):
    # PostgreSQL refuses NUL in text; a newline in a detail forges log lines.
    with pytest.raises(ValidationError, match=field):
        measurement.validate_python(icmp(ok=False, reason="timeout", figures={
            "sent": 1, "received": 0, "loss_ratio": 1}, **{field: f"Service{char}Unavailable"}))


def test_free_text_may_be_any_printable_language():
    m = measurement.validate_python(icmp(target="сайт.example", detail="délai dépassé 超时 ✓"))
    assert m.detail == "délai dépassé 超时 ✓"


@pytest.mark.parametrize("kind, figures", [
    ("http", {"final_url": "http://192.0.2.1/a\x00b"}),
    ("http", {"http_version": "HTTP/1.1\r"}),
    ("tcp", {"tls_version": "TLSv1.3\x00"}),
    ("dns", {"rcode": "NOERROR\n", "answers": []}),
    ("dns", {"answers": ["192.0.2.1\nforged"]}),
])
def test_figures_text_holds_no_control_character(kind, figures):
    with pytest.raises(ValidationError, match="pattern"):
        measurement.validate_python(icmp(kind=kind, figures=figures))


def test_seq_fits_a_signed_64_bit_integer():
    assert measurement.validate_python(icmp(seq=2**63 - 1)).seq == 2**63 - 1
    with pytest.raises(ValidationError, match="less than or equal to 9223372036854775807"):
        measurement.validate_python(icmp(seq=2**63))


@pytest.mark.parametrize("started_at", [
    "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "1999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z", "2100-01-01T00:00:01Z",
])
def test_started_at_is_refused_outside_the_sane_range(started_at):
    # Year 1 was stored and read back as 1968; the ends of the range overflowed (500).
    with pytest.raises(ValidationError, match="started_at"):
        measurement.validate_json(json.dumps(icmp(started_at=started_at)))


def test_a_certificate_that_never_expires_is_a_valid_figure():
    # RFC 5280: 99991231235959Z means no well-defined expiry.
    m = measurement.validate_python(icmp(kind="tcp", figures={
        "tls_cert_not_after": "9999-12-31T23:59:59Z"}))
    assert m.figures.tls_cert_not_after.year == 9999


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
@pytest.mark.parametrize("field", ["duration_s", "interval_s"])
def test_numbers_are_finite(field, number):
    # JSON has no Infinity, but Python's and pydantic's parsers read it.
    body = json.dumps(icmp(**{field: 1.5})).replace(f'"{field}": 1.5', f'"{field}": {number}')
    assert number in body
    with pytest.raises(ValidationError, match="finite"):
        read_measurement(body)


def test_rtt_samples_are_finite():
    with pytest.raises(ValidationError, match="finite"):
        IcmpFigures(sent=1, received=1, loss_ratio=0, rtt_min_s=0.1, rtt_median_s=0.1,
                    rtt_mean_s=0.1, rtt_max_s=0.1, samples_s=[float("nan")])


@pytest.mark.parametrize("overrides", [
    {"ok": "yes"}, {"ok": 1}, {"seq": "11"}, {"seq": 1.0}, {"duration_s": "2.1"},
    {"local_ok": 0}, {"confirmation": "false"}, {"interval_s": "60"},
    {"figures": {**icmp()["figures"], "sent": "3"}},
])
def test_wire_types_are_strict(overrides):
    # What Python would let pass ("yes" for true, "11" for 11) is refused on the wire.
    assert measurement.validate_json(json.dumps(icmp(**overrides)))  # the lax reading
    with pytest.raises(ValidationError):
        read_measurement(json.dumps(icmp(**overrides)))


def test_what_the_probe_encodes_passes_the_strict_reading():
    m = measurement.validate_python(icmp(
        seq=None, ok=False, reason="timeout", detail="no reply", ip_version=4, local_ok=True,
        interval_s=60, figures={"sent": 3, "received": 0, "loss_ratio": 1.0}))
    text = encode_batch("fra-1", "FRA", "0" * 32, 0, [with_seq(9, encode_result(m))])
    assert read_batch(text).measurements[0] == m.model_copy(update={"seq": 9})
    assert read_measurement(with_seq(9, encode_result(m))).seq == 9


@pytest.mark.parametrize("raw, expected", [
    ("HTTP/1.1 503 Service\x00Unavailable", "HTTP/1.1 503 Service\\x00Unavailable"),
    ("line one\r\nline two\tend", "line one\\x0d\\x0aline two\\x09end"),
    ("\x1b[31mred\x9b", "\\x1b[31mred\\x9b"),
    ("lone \udcff surrogate", "lone \ufffd surrogate"),
    ("déjà vu ✓", "déjà vu ✓"),
])
def test_clean_text_makes_any_text_a_valid_detail(raw, expected):
    assert clean_text(raw, 500) == expected
    m = measurement.validate_python(icmp(ok=False, reason="http_status",
                                         detail=clean_text(raw, 500), figures={
                                             "sent": 1, "received": 0, "loss_ratio": 1}))
    assert m.detail == expected


def test_clean_text_shortens_to_the_limit():
    assert clean_text("a" * 600, 500) == "a" * 500
    assert len(clean_text("\x00" * 600, 500)) == 500


def test_an_ack_from_an_older_collector_or_with_more_fields_is_read():
    assert Ack.model_validate_json(
        '{"protocol": 1, "acked_through": 5, "stored": 5, "duplicates": 0}').rejected == []
    ack = Ack.model_validate_json(
        '{"protocol": 1, "acked_through": 5, "stored": 4, "duplicates": 0, "later": 1, '
        '"rejected": [{"seq": 3, "reason": "invalid", "detail": "detail: ...", "x": 2}]}')
    assert [(r.seq, r.reason) for r in ack.rejected] == [(3, "invalid")]


def test_a_configured_target_follows_the_same_text_rule():
    # Else every round of the check would build a result the wire refuses.
    from unhindered.checks.icmp import IcmpCheck
    assert IcmpCheck(id="gw", kind="icmp", target="192.0.2.1").target == "192.0.2.1"
    with pytest.raises(ValidationError, match="pattern"):
        IcmpCheck(id="gw", kind="icmp", target="192.0.2.1\n")


# --- the probe's check list (issue 12, case 7) ---

def test_a_batch_carries_the_probes_check_list_and_since_when():
    checks = CheckList(since=datetime(2026, 1, 15, 11, tzinfo=timezone(timedelta(hours=1))),
                       ids=["internet-icmp", "docs-tcp"])
    text = encode_batch("fra-1", "FRA", "0" * 32, 0, [with_seq(1, encode_result(
        measurement.validate_python(icmp())))], checks=checks)
    batch = read_batch(text)
    assert batch.checks.ids == ["internet-icmp", "docs-tcp"]
    assert batch.checks.since == datetime(2026, 1, 15, 10, tzinfo=UTC)
    assert batch.checks.since.utcoffset() == timedelta(0)
    # An empty list is a list: the probe runs no check (every one it ran is retired).
    assert read_batch(json.dumps(batch_with([]))).checks.ids == []


def test_a_batch_without_a_check_list_is_read_as_before():
    """Older probes, and batches the collector makes of SNMP polls, have none."""
    assert read_batch(json.dumps(batch(1))).checks is None
    text = encode_batch("fra-1", "FRA", "0" * 32, 0, [with_seq(1, encode_result(
        measurement.validate_python(icmp())))])
    assert '"checks"' not in text
    assert read_batch(text).checks is None


def batch_with(ids, since="2026-01-15T10:00:00Z"):
    return batch(1, checks={"since": since, "ids": ids})


@pytest.mark.parametrize("checks, message", [
    ({"since": "2026-01-15T10:00:00Z", "ids": ["a", "a"]}, "listed twice"),
    ({"since": "2026-01-15T10:00:00Z", "ids": ["bad id"]}, "pattern"),
    ({"since": "2026-01-15T10:00:00Z", "ids": [7]}, "string"),
    ({"since": "2026-01-15T10:00:00Z", "ids": "a"}, "list"),
    ({"since": "2026-01-15T10:00:00", "ids": ["a"]}, "timezone"),
    ({"since": "1999-12-31T23:59:59Z", "ids": ["a"]}, "greater than or equal"),
    ({"since": 1768471200, "ids": ["a"]}, "datetime"),
    ({"ids": ["a"]}, "since"),
    ({"since": "2026-01-15T10:00:00Z", "ids": ["a"], "extra": 1}, "extra"),
    ({"since": "2026-01-15T10:00:00Z", "ids": [f"c{i}" for i in range(10_001)]}, "at most"),
])
def test_the_check_list_is_strictly_typed(checks, message):
    with pytest.raises(ValidationError, match=message):
        read_batch(json.dumps(batch(1, checks=checks)))
