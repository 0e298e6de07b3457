"""The collector's tables (SQLAlchemy Core). Changes go through a migration in
collector/store/migrations/versions/ as well: the database is never altered by create_all.

Times are UTC epoch seconds (double precision): exact enough for microsecond RTT work,
cheap to compare, and the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

_id = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only

probes = Table(
    "probes", metadata,
    Column("probe_id", String(64), primary_key=True),
    Column("mission", String(16), nullable=False),
    # NULL until the probe has redeemed its enrollment token.
    Column("token_hash", String(64), unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    # Its newest batch: when it came, the backlog it reported, the probe's version.
    Column("last_report_at", Float),
    Column("backlog", BigInteger),
    Column("version", String(64)),
)

# One-time enrollment tokens: a new probe trades one for its credential on first start.
enrollments = Table(
    "enrollments", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("probe_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float),
)

# Read-only API credentials (dashboards, scripts, the annual report's author).
readers = Table(
    "readers", metadata,
    Column("name", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

results = Table(
    "results", metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("probe_id", String(64), nullable=False),
    Column("outbox_id", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("mission", String(16), nullable=False),
    Column("check_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("check_group", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("ip_version", SmallInteger),
    Column("started_at", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("reason", String(32)),
    Column("detail", Text),
    Column("confirmation", Boolean, nullable=False),
    Column("local_ok", Boolean),
    Column("interval_s", Float),
    Column("figures", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    UniqueConstraint("probe_id", "outbox_id", "seq", name="results_probe_seq"),
    Index("results_check_time", "mission", "check_id", "started_at"),
    Index("results_received", "received_at"),
)

# Exact state history per (mission, check): one row per period, ended_at NULL for the
# current one. Kept for years: the uptime reports read these, not the raw results.
state_intervals = Table(
    "state_intervals", metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("mission", String(16), nullable=False),
    Column("check_id", String(64), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("state", String(10), nullable=False),
    Column("cause", Text, nullable=False),
    # started_at is placed from the rounds' evidence, between these two bounds (NULL: not
    # known, e.g. the first round after unknown); decided_at is the round that made the
    # change (NULL: started_at), which a replay from a time goes by (docs/states.md).
    Column("started_after", Float),
    Column("started_before", Float),
    Column("decided_at", Float),
    Index("state_intervals_check_time", "mission", "check_id", "started_at"),
)

# When a probe stopped running a check (the check list in its batches, docs/states.md):
# the check is retired from `retired_at` on, until a round of it comes again. Kept for
# good, like the intervals: replaying a check's history (late rounds, a restart) applies
# them again among its rounds.
check_retirements = Table(
    "check_retirements", metadata,
    Column("mission", String(16), primary_key=True),
    Column("check_id", String(64), primary_key=True),
    Column("retired_at", Float, primary_key=True),
    Column("probe_id", String(64), nullable=False),  # whose check list left it out
)

# The same for a mission's access: per group of checks, and over all groups ("*").
access_intervals = Table(
    "access_intervals", metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("mission", String(16), nullable=False),
    Column("check_group", String(64), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("state", String(10), nullable=False),
    Column("cause", Text, nullable=False),
    Index("access_intervals_time", "mission", "check_group", "started_at"),
)

# Per-minute, per-hour and per-day summaries of the rounds (resolution_s 60, 3600 or
# 86400), recomputed
# from the raw results whenever results for their bucket arrive, so backfill is exact.
# Kept for years after the raw results are gone.
rollups = Table(
    "rollups", metadata,
    Column("mission", String(16), primary_key=True),
    Column("check_id", String(64), primary_key=True),
    Column("resolution_s", Integer, primary_key=True),
    Column("bucket_start", Float, primary_key=True),
    Column("rounds", Integer, nullable=False),
    Column("rounds_ok", Integer, nullable=False),
    Column("samples", Integer, nullable=False),  # RTT values the figures below summarise
    Column("rtt_min_s", Float),
    Column("rtt_median_s", Float),
    Column("rtt_p95_s", Float),
    Column("rtt_max_s", Float),
    Column("sent", Integer),  # ICMP echo requests, for an exact loss ratio
    Column("received", Integer),
    # Day buckets only: the RTT values counted in 5 % wide logarithmic bins (JSON, see
    # collector/store/rollups.py), which add up across days into a month's percentiles.
    Column("rtt_histogram", Text),
    # The reports read a period's day buckets of every check: a small index of those alone
    # (partial: the minute and hour rows, 30 times as many, stay out of it).
    Index("rollups_days", "bucket_start", sqlite_where=text("resolution_s = 86400"),
          postgresql_where=text("resolution_s = 86400")),
)

# The centre's own measurements of the probes' targets (collector/control/), beside the
# probes' results and kept as long: `key` names what was measured (kind and settings,
# collector/control/plan.py), shared by every mission whose check measures the same.
control_results = Table(
    "control_results", metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("key", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("target", String(2048), nullable=False),
    Column("label", String(2048), nullable=False),
    Column("settings", Text, nullable=False),  # JSON: the check settings measured with
    Column("trigger", String(16), nullable=False),  # periodic, failure
    Column("measured_at", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("reason", String(32)),
    Column("detail", Text),
    Column("ip_version", SmallInteger),
    Column("figures", Text, nullable=False),
    Index("control_results_key_time", "key", "measured_at"),
    Index("control_results_target_time", "target", "measured_at"),
    Index("control_results_time", "measured_at"),
)

# Paths the probes recorded to their checks' targets (docs/path.md): after a confirmed
# failure (kept for good, like the outages they explain) and as a baseline (kept as long as
# raw results, the newest of each check for good: the last good path). `record` is the
# PathRecord as JSON; the columns beside it are what queries select on.
paths = Table(
    "paths", metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("mission", String(16), nullable=False),
    Column("check_id", String(64), nullable=False),
    Column("probe_id", String(64), nullable=False),
    Column("trigger", String(16), nullable=False),  # failure, baseline
    Column("started_at", Float, nullable=False),
    Column("method", String(8), nullable=False),
    Column("address", String(45), nullable=False),
    Column("reached", Boolean, nullable=False),
    Column("stopped_after_ttl", SmallInteger, nullable=False),
    Column("result_ok", Boolean, nullable=False),  # the outcome of the round it came with
    Column("record", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Index("paths_check_time", "mission", "check_id", "started_at"),
)

# Small facts the collector keeps about itself (e.g. how far rollups have got).
collector_meta = Table(
    "collector_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
