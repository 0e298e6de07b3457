"""The collector's ingest endpoint, served on loopback, against real stores."""

import gzip
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from collector.config import CollectorConfig, IngestSettings
from collector.store.database import results
from collector.web.app import create_app
from tests.support import scrape_until
from tests.unit.test_measurement import batch, icmp


@pytest.fixture
def store(any_store):
    """Ingest is tested on both backends (SQLite and PostgreSQL)."""
    return any_store


@pytest.fixture
def tokens(store):
    return {"FRA": store.add_probe("fra-1", "FRA"), "KEN": store.add_probe("ken-1", "KEN")}


@pytest.fixture
async def client(store, tokens):
    config = CollectorConfig(ingest=IngestSettings(max_body_bytes=64 * 1024))
    async with TestClient(TestServer(create_app(config, store))) as c:
        yield c


def count(store):
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(results)).scalar()


async def post(client, body, token=None, gzipped=False, raw=False):
    data = body if raw else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
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
    ({**batch(), "measurements": [icmp(duration_s=-1)]}, "FRA", 422, "invalid batch"),
    ({**batch(), "measurements": [icmp(figures={"sent": 1, "received": 0, "loss_ratio": 7})]},
     "FRA", 422, "invalid batch"),
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
    status, answer = await post(client, {**batch(), "measurements": [icmp(duration_s=-1)]},
                                tokens["FRA"])
    assert status == 422
    assert answer["details"][0]["field"] == "measurements.0.icmp.duration_s"


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
