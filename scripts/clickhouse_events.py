#!/usr/bin/env python3
"""Feed proxyscope event streams through the documented Vector pipeline into an embedded ClickHouse.

  clickhouse_events.py --session DIR HOST=STREAM.jsonl... [HOST=EVENTS.parquet...]

Creates the table with docs/clickhouse/events.sql as written, turns each line of each stream into a
row with the remap program of docs/clickhouse/vector.toml, run by VRL itself (the pyvrl package), the
event carrying `host` as Vector's exec source sets it, and inserts the rows as JSONEachRow with the
settings that config's ClickHouse sink sends. Then runs every query of docs/clickhouse/queries.sql
and measures the table's size on disk. Prints one JSON object: rows inserted and lines dropped per
host, the record fields the table has no column for, each query's rows, and the storage figures.

Needs the chdb-core and pyVRL packages on PYTHONPATH (tests/common/python.rs installs them, through
scripts/ensure-python.sh). Used by tests/clickhouse.rs and scripts/fleet-sizing.sh.
"""

import argparse
import json
import os
import sys
import tomllib

import chdb.session
import pyvrl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def statements(path):
    """The statements of a SQL file, in order: (name from a `-- name: X` line or None, text)."""
    out, cur, name = [], [], None
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if s.startswith("-- name:"):
            name = s.split(":", 1)[1].strip()
        cur.append(line)
        if s.endswith(";") and not s.startswith("--"):
            out.append((name, "".join(cur).strip().rstrip(";")))
            cur, name = [], None
    if any(l.strip() and not l.strip().startswith("--") for l in cur):
        sys.exit(f"{path}: text after the last statement")
    return out


def sink_settings(sink):
    """The ClickHouse settings Vector's clickhouse sink puts on its INSERT for this config."""
    if sink.get("format", "json_each_row") != "json_each_row":
        sys.exit("the sink must send JSONEachRow")
    st = {"input_format_import_nested_json": 1}
    if "skip_unknown_fields" in sink:
        st["input_format_skip_unknown_fields"] = int(bool(sink["skip_unknown_fields"]))
    # Without date_time_best_effort a server parses with its default, `basic` (chdb's own default
    # is best_effort, so it is said here).
    st["date_time_input_format"] = "best_effort" if sink.get("date_time_best_effort") else "basic"
    return st


def rows(session, sql):
    text = session.query(sql, "JSONEachRow").bytes().decode()
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--session", required=True, help="directory for the embedded server's data")
    ap.add_argument("--ddl", default=os.path.join(REPO, "docs/clickhouse/events.sql"))
    ap.add_argument("--vector", default=os.path.join(REPO, "docs/clickhouse/vector.toml"))
    ap.add_argument("--queries", default=os.path.join(REPO, "docs/clickhouse/queries.sql"))
    ap.add_argument("--load-parquet", default=os.path.join(REPO, "docs/clickhouse/load-parquet.sql"))
    ap.add_argument("streams", nargs="+", metavar="HOST=FILE",
                    help="a JSON Lines stream, or a .parquet file (loaded with --load-parquet)")
    a = ap.parse_args()

    cfg = tomllib.load(open(a.vector, "rb"))
    remaps = [t for t in cfg.get("transforms", {}).values() if t.get("type") == "remap"]
    sinks = [s for s in cfg.get("sinks", {}).values() if s.get("type") == "clickhouse"]
    if len(remaps) != 1 or len(sinks) != 1:
        sys.exit(f"{a.vector}: want one remap transform and one clickhouse sink")
    remap, sink = remaps[0], sinks[0]
    program = pyvrl.Transform(remap["source"])
    table = f"{sink['database']}.{sink['table']}"
    settings = sink_settings(sink)

    s = chdb.session.Session(a.session)
    for _, sql in statements(a.ddl):
        s.query(sql)

    sources = [c for c in cfg.get("sources", {}).values() if c.get("type") == "exec"]
    out = {"table": table, "settings": settings, "command": sources[0]["command"] if sources else None,
           "hosts": {}, "unknown_fields": [], "queries": {}}
    columns = {r["name"] for r in rows(s, f"SELECT name FROM system.columns WHERE database = '{sink['database']}' AND table = '{sink['table']}'")}
    seen = set()
    for spec in a.streams:
        host, _, path = spec.partition("=")
        if path.endswith(".parquet"):
            # The documented statement, its query parameters given as clickhouse-client would.
            for _, sql in statements(a.load_parquet):
                s.query(sql, "TSV", params={"host": host, "path": os.path.abspath(path)})
            n = rows(s, f"SELECT count() AS n FROM {table} WHERE host = '{host}'")[0]["n"]
            out["hosts"][host] = {"rows": int(n), "parquet_bytes": os.path.getsize(path)}
            continue
        batch, aborted, errors, in_bytes = [], 0, 0, 0
        for line in open(path, encoding="utf-8"):
            in_bytes += len(line.encode())
            # What Vector's exec source hands the remap: the line in .message, the host name in .host.
            try:
                rec = program.remap({"message": line.rstrip("\n"), "host": host})
            except ValueError as e:
                if "aborted" in str(e):
                    aborted += 1
                    continue
                if not remap.get("drop_on_error"):
                    raise
                errors += 1
                continue
            seen.update(rec)
            batch.append(json.dumps(rec, separators=(",", ":")))
        setting_text = ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in settings.items())
        if batch:
            s.query(f"INSERT INTO {table} SETTINGS {setting_text} FORMAT JSONEachRow\n" + "\n".join(batch))
        out["hosts"][host] = {"lines": aborted + errors + len(batch), "rows": len(batch), "aborted": aborted,
                              "errors": errors, "jsonl_bytes": in_bytes}
    out["unknown_fields"] = sorted(seen - columns)

    for name, sql in statements(a.queries):
        out["queries"][name or f"query{len(out['queries']) + 1}"] = rows(s, sql)

    # Storage: merged into as few parts as the partitions allow, as a table settles.
    s.query(f"OPTIMIZE TABLE {table} FINAL")
    db, tb = sink["database"], sink["table"]
    out["storage"] = {
        "rows": rows(s, f"SELECT count() AS n FROM {table}")[0]["n"],
        "parts": rows(s, f"SELECT count() AS n, sum(bytes_on_disk) AS bytes_on_disk FROM system.parts WHERE database = '{db}' AND table = '{tb}' AND active")[0],
        "columns": rows(s, f"SELECT name, data_compressed_bytes AS compressed, data_uncompressed_bytes AS uncompressed FROM system.columns WHERE database = '{db}' AND table = '{tb}' ORDER BY compressed DESC"),
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
