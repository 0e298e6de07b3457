"""The collector's ingest endpoint, served on loopback, against real stores."""

import gzip
import json
import time
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from collector.config import CollectorConfig, IngestSettings, RetentionSettings
from collector.store.database import results
from collector.web.app import create_app
from tests.support import scrape_until
from tests.support.storage import registered_since
from tests.unit.test_measurement import batch, icmp
from unhindered.measurement import ACK_HEADER, ACK_WITH_REJECTED

# The test results are dated 2026-01-15 (tests/unit/test_measurement.py icmp): the
# collector keeps raw results long enough to take them, from probes registered before.
REGISTERED = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
LONG_RETENTION = RetentionSettings(raw_days=3650)


@pytest.fixture
def store(any_store):
    """Ingest is tested on both backends (SQLite and PostgreSQL)."""
    return any_store


@pytest.fixture
def tokens(store):
    tokens = {"FRA": store.add_probe("fra-1", "FRA"), "KEN": store.add_probe("ken-1", "KEN")}
    registered_since(store, REGISTERED)
    return tokens


@pytest.fixture
async def client(store, tokens):
    config = CollectorConfig(ingest=IngestSettings(max_body_bytes=64 * 1024),
                             retention=LONG_RETENTION)
    async with TestClient(TestServer(create_app(config, store))) as c:
        yield c


def count(store):
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(results)).scalar()


async def post(client, body, token=None, gzipped=False, raw=False, reads_rejected=True):
    data = body if raw else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if reads_rejected:  # as the probe's reporter asks (probes/reporters/http_push.py)
        headers[ACK_HEADER] = ACK_WITH_REJECTED
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    response = await client.post("/api/v1/results", data=data, headers=headers)
    return response.status, await response.json()


async def test_batch_is_stored_once_and_acknowledged(client, store, tokens):
    status, ack = await post(client, batch(1, 2, 3), tokens["FRA"], gzipped=True)
    assert (status, ack["acked_through"], ack["stored"], ack["duplicates"]) == (200, 3, 3, 0)
    # A retry after a lost answer, overlapping the next batch: idempotent by (probe, seq).
    status, ack = await post(client, batch(2, 3, 4), tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"], ack["duplicates"]) == (200, 4, 1, 2)
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 2, 3, 4]
    # A third of the echo requests lost: over the default inventory's 5 % loss threshold.
    degraded = 'unhindered_check_state{check="internet-icmp",mission="FRA",state="degraded"} 1.0'
    duplicates = 'unhindered_ingest_results_total{outcome="duplicate"} 2.0'
    metrics = await scrape_until(client, degraded, duplicates)
    assert degraded in metrics
    assert duplicates in metrics


@pytest.mark.parametrize("body, token_of, status, reason", [
    (b'{"protocol": 1, "measurements": [', "FRA", 400, "not valid JSON"),
    (b"[1, 2]", "FRA", 400, "JSON object"),
    (batch(1), None, 401, "missing bearer token"),
    (batch(1), "wrong", 401, "unknown or revoked token"),
    (batch(1), "KEN", 403, "belongs to probe ken-1 of mission KEN"),
    (batch(1, protocol=2), "FRA", 400, "unsupported protocol version 2"),
    (batch(1, protocol=None), "FRA", 400, "unsupported protocol version None"),
    # What identifies the results (the envelope, each one's seq) refuses the batch whole;
    # a result's own fields refuse that result alone (test_one_bad_result_...).
    ({**batch(1), "outbox_id": "not-hex"}, "FRA", 422, "invalid batch"),
    (batch(), "FRA", 422, "invalid batch"),
    (batch(2**63), "FRA", 422, "invalid batch"),
    ({**batch(), "measurements": [icmp(seq="11")]}, "FRA", 422, "invalid batch"),
    ({**batch(), "measurements": [icmp(seq=True)]}, "FRA", 422, "invalid batch"),
    ({**batch(), "measurements": [[1]]}, "FRA", 422, "invalid batch"),
    (b'{"protocol": 1, "measurements": ' + b"[" * 1000 + b"]" * 1000 + b"}", "FRA", 400,
     "nested too deep"),
    (b'{"protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "' + b"a" * 32
     + b'", "measurements": [{"seq": 1, "figures": ' + b"[" * 5_000 + b"]" * 5_000 + b"}]}",
     "FRA", 400, "nested too deep"),
    ({**batch(), "measurements": [icmp(started_at="2099-01-01T00:00:00Z")]}, "FRA", 422,
     "in the future"),
])
async def test_bad_input_is_refused_with_a_reason_and_stores_nothing(
        client, store, tokens, body, token_of, status, reason):
    token = tokens.get(token_of, token_of)
    got, answer = await post(client, body, token, raw=isinstance(body, bytes))
    assert got == status
    assert reason in answer["error"]
    assert count(store) == 0


async def test_field_errors_name_the_field(client, tokens, store):
    status, answer = await post(client, {**batch(1), "outbox_id": "xyz"}, tokens["FRA"])
    assert status == 422
    assert answer["details"][0]["field"] == "outbox_id"
    # A result's own field: that result is rejected alone, and the rejection names it.
    status, ack = await post(client, {**batch(), "measurements": [icmp(duration_s=-1)]},
                             tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"]) == (200, 1, 0)
    [rejected] = ack["rejected"]
    assert (rejected["seq"], rejected["reason"]) == (1, "invalid")
    assert rejected["detail"].startswith("icmp.duration_s: Input should be greater than")


def nul_batch(*seqs, bad=3):
    """A batch whose result `bad` has a NUL in its detail, as an HTTP status line put it."""
    failed = {"ok": False, "reason": "http_status", "detail": "503 Service\x00Unavailable",
              "figures": {"sent": 1, "received": 0, "loss_ratio": 1.0}}
    return {**batch(), "measurements": [icmp(seq=s, **(failed if s == bad else {}))
                                        for s in seqs]}


async def test_one_bad_result_is_rejected_alone_and_the_rest_stored(client, store, tokens):
    """Issue 12, case 1: on PostgreSQL one NUL made the whole batch fail for good, and
    nothing queued behind it was ever delivered."""
    status, ack = await post(client, nul_batch(1, 2, 3, 4, 5), tokens["FRA"], gzipped=True)
    assert status == 200, ack
    assert (ack["acked_through"], ack["stored"], ack["duplicates"]) == (5, 4, 0)
    [rejected] = ack["rejected"]
    assert (rejected["seq"], rejected["reason"]) == (3, "invalid")
    assert rejected["detail"].startswith("icmp.detail: String should match pattern")
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 2, 4, 5]
    # The probe deletes through 5 and goes on: the next batch is stored.
    status, ack = await post(client, batch(6, 7), tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"], ack["rejected"]) == (200, 7, 2, [])
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 2, 4, 5, 6, 7]
    line = 'unhindered_ingest_rejected_results_total{reason="invalid"} 1.0'
    assert line in await scrape_until(client, line)


async def test_an_older_probe_gets_the_ack_it_can_read(client, store, tokens):
    # Probes before the `rejected` field refuse unknown fields in the Ack: they would send
    # the batch again for ever. Without their asking, the answer has the four old fields.
    status, ack = await post(client, nul_batch(1, 2, 3), tokens["FRA"], reads_rejected=False)
    assert (status, ack) == (200, {"protocol": 1, "acked_through": 3, "stored": 2,
                                   "duplicates": 0})
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 2]


async def test_every_result_rejected_is_still_an_answer(client, store, tokens):
    status, ack = await post(client, nul_batch(9, bad=9), tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"], ack["duplicates"]) == (200, 9, 0, 0)
    assert [r["seq"] for r in ack["rejected"]] == [9]
    assert count(store) == 0


def raw_result(seq: int, text: str) -> bytes:
    """A batch of one result whose JSON has `text` spliced in last, as no encoder writes."""
    body = json.dumps(batch(seq))
    return (body[:body.rindex("}]}")] + ", " + text + "}]}").encode()


@pytest.mark.parametrize("result, field", [
    (icmp(started_at="0001-01-01T00:00:00Z"), "started_at"),  # read back as 1968, once
    (icmp(started_at="9999-12-31T23:59:59-01:00"), "started_at"),  # a 500, once
    (icmp(ok="yes"), "ok"),
    (icmp(duration_s="2.1"), "duration_s"),
    (icmp(detail="line\nforged log line"), "detail"),
    (icmp(target="192.0.2.1\x00"), "target"),
    (icmp(kind="carrier-pigeon"), "kind"),
    ({"seq": 1}, "kind"),
])
async def test_a_result_breaking_the_wire_rules_is_rejected_with_its_field(
        client, store, tokens, result, field):
    status, ack = await post(client, {**batch(), "measurements": [icmp(seq=1), {**result,
                                                                              "seq": 2}]},
                             tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"]) == (200, 2, 1)
    [rejected] = ack["rejected"]
    assert (rejected["seq"], rejected["reason"]) == (2, "invalid")
    assert field in rejected["detail"]


@pytest.mark.parametrize("text", ['"interval_s": Infinity', '"interval_s": NaN',
                                  '"interval_s": 1e999'])
async def test_a_number_that_is_not_finite_is_rejected(client, store, tokens, text):
    status, ack = await post(client, raw_result(4, text), tokens["FRA"], raw=True)
    assert (status, ack["acked_through"], ack["stored"]) == (200, 4, 0)
    assert [(r["seq"], r["reason"]) for r in ack["rejected"]] == [(4, "invalid")]
    assert "finite" in ack["rejected"][0]["detail"]


async def test_results_out_of_order_or_of_another_probe_are_rejected(client, store, tokens):
    body = {**batch(), "measurements": [icmp(seq=1), icmp(seq=3), icmp(seq=2),
                                        icmp(seq=4, probe_id="ken-1", mission="KEN"),
                                        icmp(seq=5, mission="KEN"), icmp(seq=6)]}
    status, ack = await post(client, body, tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"]) == (200, 6, 3)
    assert [(r["seq"], r["reason"]) for r in ack["rejected"]] == [
        (2, "out_of_order"), (4, "wrong_probe"), (5, "wrong_probe")]
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 3, 6]


async def test_duplicates_count_only_the_seqs_sent_again(client, store, tokens):
    assert (await post(client, batch(1, 2, 3, 4), tokens["FRA"]))[1]["stored"] == 4
    # 2, 3 and 4 are stored but not in this batch: they are no duplicates of it.
    status, ack = await post(client, batch(1, 5), tokens["FRA"])
    assert (status, ack["acked_through"], ack["stored"], ack["duplicates"]) == (200, 5, 1, 1)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def test_results_older_than_the_retention_or_the_registration_are_rejected(store):
    """The raw results of a day past retention.raw_days are gone: a late one would
    recompute its rollups from itself alone. Before its registration the probe did not
    exist: its clock is wrong, and its times would rewrite history."""
    token = store.add_probe("fra-1", "FRA")
    now = time.time()
    registered_since(store, now - 40 * 86_400)
    config = CollectorConfig()  # the defaults: 30 days of raw results, 300 s of clock error
    async with TestClient(TestServer(create_app(config, store))) as client:
        body = {**batch(), "measurements": [
            icmp(seq=1, started_at=iso(now - 31 * 86_400)),
            icmp(seq=2, started_at=iso(now - 29 * 86_400))]}
        status, ack = await post(client, body, token)
        assert (status, ack["acked_through"], ack["stored"]) == (200, 2, 1)
        assert [(r["seq"], r["reason"]) for r in ack["rejected"]] == [(1, "too_old")]
        assert "30 days" in ack["rejected"][0]["detail"]

        registered_since(store, now - 3600)
        body = {**batch(), "measurements": [
            icmp(seq=3, started_at=iso(now - 7200)),
            icmp(seq=4, started_at=iso(now - 3600 - 200)),  # within the clock error allowed
            icmp(seq=5, started_at=iso(now - 60))]}
        status, ack = await post(client, body, token)
        assert (status, ack["acked_through"], ack["stored"]) == (200, 5, 2)
        assert [(r["seq"], r["reason"]) for r in ack["rejected"]] == [
            (3, "before_registration")]
        assert [r.seq for r in store.results_of_probe("fra-1")] == [2, 4, 5]
        line = 'unhindered_ingest_rejected_results_total{reason="before_registration"} 1.0'
        text = await scrape_until(client, line)
        assert 'unhindered_ingest_rejected_results_total{reason="too_old"} 1.0' in text
        assert 'unhindered_ingest_rejected_results_total{reason="store_refused"} 0.0' in text


async def test_oversized_body_is_refused(client, tokens, store):
    big = batch(*range(1, 400))  # about 170 kB of JSON, over the 64 kB limit
    status, answer = await post(client, big, tokens["FRA"])
    assert status == 413 and "exceeds 65536 bytes" in answer["error"]
    # The limit applies after decompression, so gzip cannot smuggle a larger batch in.
    status, answer = await post(client, big, tokens["FRA"], gzipped=True)
    assert status == 413
    assert count(store) == 0


async def test_corrupt_gzip_is_refused(client, tokens, store):
    response = await client.post(
        "/api/v1/results", data=b"\x1f\x8bnot gzip at all",
        headers={"Authorization": f"Bearer {tokens['FRA']}", "Content-Encoding": "gzip"})
    assert response.status == 400
    assert count(store) == 0


async def test_revoked_probe_is_refused(client, store, tokens):
    assert (await post(client, batch(1), tokens["FRA"]))[0] == 200
    assert store.revoke_probe("fra-1")
    status, answer = await post(client, batch(2), tokens["FRA"])
    assert status == 401 and "revoked" in answer["error"]
    assert count(store) == 1


async def test_tokens_are_stored_hashed(store, tokens):
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT token_hash FROM probes").scalars().all()
    assert len(stored) == 2
    assert not any(t in h or h in t for t in tokens.values() for h in stored)
