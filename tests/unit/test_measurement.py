from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from unhindered.measurement import (
    Batch,
    IcmpFigures,
    Measurement,
    encode_batch,
    encode_result,
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
