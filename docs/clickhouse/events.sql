-- proxyscope's event stream (JSON Lines schema proxyscope.events/1) in ClickHouse: one table for the
-- whole fleet. Documented in docs/clickhouse.md, and tests/clickhouse.rs runs this file as it is.

CREATE DATABASE IF NOT EXISTS proxyscope;

CREATE TABLE IF NOT EXISTS proxyscope.events
(
    -- The host that ran `proxyscope live`; the shipper adds it (docs/clickhouse/vector.toml).
    host      LowCardinality(String),
    -- The record's fields, as `live --format jsonl` and `timeline --format jsonl` write them.
    ts        DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    t         Float64 CODEC(FPC, ZSTD(1)),
    frame     UInt64 CODEC(Delta, ZSTD(1)),
    file      UInt16,
    conn      UInt64 CODEC(Delta, ZSTD(1)),
    leg       LowCardinality(String),
    dir       LowCardinality(String),
    `from`    String CODEC(ZSTD(3)),
    `to`      String CODEC(ZSTD(3)),
    layer     LowCardinality(String),
    kind      LowCardinality(String),
    detail    String CODEC(ZSTD(3)),
    -- Read out of `detail` once, at insert, for the dashboards' GROUP BY. An unknown value is
    -- 'none', as the Prometheus labels of `live --metrics` say it.
    label     LowCardinality(String) MATERIALIZED
        if(kind = 'verdict.close', ifNull(nullIf(JSONExtractString(detail, 'label'), ''), 'none'), ''),
    closed_by LowCardinality(String) MATERIALIZED
        if(kind = 'verdict.close', JSONExtractString(detail, 'closed_by'), ''),
    signature LowCardinality(String) MATERIALIZED
        if(kind = 'verdict.incident', ifNull(nullIf(JSONExtractString(detail, 'signature', 'id'), ''), 'none'), ''),
    incident  UInt32 MATERIALIZED
        if(kind = 'verdict.incident', JSONExtractUInt(detail, 'id'), 0),
    -- A close a person should look at: any label but clean_quit, clean_close and still_open
    -- (a label added later counts as a problem, as it does in the report).
    problem   Bool MATERIALIZED
        kind = 'verdict.close' AND label NOT IN ('clean_quit', 'clean_close', 'still_open')
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (kind, host, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY DELETE;
