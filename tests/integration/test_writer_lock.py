"""One collector writes a database at a time: a second one on the same database refuses
to start, on SQLite and on PostgreSQL, and starts once the first has stopped."""

from __future__ import annotations

import pytest

from collector.config import CollectorConfig
from collector.core import Collector
from collector.store.database import Store
from collector.store.writer import AnotherWriter


async def test_a_second_collector_on_the_same_database_refuses_to_start(any_store):
    config = CollectorConfig()
    first = Collector(config, Store(any_store.url))
    await first.start()
    second = Collector(config, Store(any_store.url))
    try:
        with pytest.raises(AnotherWriter, match="another collector is serving from"):
            await second.start()
    finally:
        second.db_thread.shutdown(wait=True)
        second.store.close()
        await first.stop()
    # The first one's lock went with it.
    third = Collector(config, Store(any_store.url))
    await third.start()
    await third.stop()
