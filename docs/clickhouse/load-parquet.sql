-- Load one Parquet file of proxyscope events (`timeline --format parquet`, or a file `live --format
-- parquet --output-rotate SECS` finished) into proxyscope.events (events.sql), as host {host}.
-- Query parameters: clickhouse-client --param_host=proxy-001 --param_path=/data/run.parquet
-- --queries-file docs/clickhouse/load-parquet.sql (the file must be readable by the server: its
-- user_files directory, or use s3()/url() in place of file()). tests/clickhouse.rs runs it as is.
-- The Parquet columns label, closed_by, signature and incident are left out: the table computes
-- them from detail. A Parquet null (t, frame, conn and leg of a live.summary row; dir, from and to
-- of an incident) becomes the column's default, as a JSON null does on the JSONEachRow path.
INSERT INTO proxyscope.events (host, ts, t, frame, file, conn, leg, dir, `from`, `to`, layer, kind, detail)
SELECT {host:String}, ts, ifNull(t, 0), ifNull(frame, 0), file, ifNull(conn, 0), ifNull(leg, ''),
       ifNull(dir, ''), ifNull(`from`, ''), ifNull(`to`, ''), layer, kind, detail
FROM file({path:String}, Parquet);
