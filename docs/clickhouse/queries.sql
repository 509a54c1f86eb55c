-- Dashboard queries over proxyscope.events (docs/clickhouse.md). Each is one panel, named by the
-- line before it. tests/clickhouse.rs runs every one of them as it is, and checks the first three
-- against `proxyscope analyze` of the same captures. In Grafana add `AND $__timeFilter(ts)`.

-- name: incidents_by_signature
-- Incidents per signature per hour per host (signature 'none': a chain no known signature fits).
SELECT toStartOfHour(ts) AS hour, host, signature, count() AS incidents
FROM proxyscope.events
WHERE kind = 'verdict.incident'
GROUP BY hour, host, signature
ORDER BY hour, host, signature;

-- name: closes_by_label
-- Finished connections per host, leg and verdict label.
SELECT host, leg, label, count() AS closes
FROM proxyscope.events
WHERE kind = 'verdict.close'
GROUP BY host, leg, label
ORDER BY host, leg, label;

-- name: problem_closes_by_proxy
-- Closes a person should look at, per proxy host and hour, by label and who started the teardown.
SELECT host, toStartOfHour(ts) AS hour, label, closed_by, count() AS closes
FROM proxyscope.events
WHERE kind = 'verdict.close' AND problem
GROUP BY host, hour, label, closed_by
ORDER BY host, hour, label, closed_by;

-- name: recent_incidents
-- The latest incidents with what happened first and the fix, for a table panel.
SELECT ts, host, signature, JSONExtractString(detail, 'confidence') AS confidence,
       JSONExtractString(detail, 'steps', 1, 'text') AS first_step,
       JSONExtractString(detail, 'signature', 'fix') AS fix
FROM proxyscope.events
WHERE kind = 'verdict.incident'
ORDER BY ts DESC
LIMIT 50;

