"""Reads the Parquet rows files of an opened Holdfast export with pyarrow and with duckdb.

Usage: read_parquet.py EXPORT_DIR

Prints one JSON object: every row rebuilt from pyarrow's reading (text columns as they are,
JSON columns parsed, `extra` merged back), and what duckdb counts and reads of the same files.
"""

import glob
import json
import os
import sys

import duckdb
import pyarrow.parquet as pq

TEXT = {"id", "_xact_id", "created", "project_id", "experiment_id", "dataset_id", "log_id",
        "root_span_id", "span_id"}

root = sys.argv[1]
pattern = os.path.join(root, "rows", "**", "*.parquet")
files = sorted(glob.glob(pattern, recursive=True))
rows = []
for f in files:
    for record in pq.read_table(f).to_pylist():
        row = {}
        for name, value in record.items():
            if value is None:
                continue
            if name in TEXT:
                row[name] = value
            elif name == "extra":
                row.update(json.loads(value))
            else:
                row[name] = json.loads(value)
        rows.append(row)

con = duckdb.connect()
count, distinct = con.execute(
    "SELECT count(*), count(DISTINCT id) FROM read_parquet(?)", [pattern]
).fetchone()
acc = con.execute(
    "SELECT CAST(json_extract(scores, '$.acc') AS INTEGER) FROM read_parquet(?) "
    "WHERE id = 'row-00007'",
    [pattern],
).fetchall()
print(json.dumps({
    "files": len(files),
    "pyarrow_rows": rows,
    "duckdb_count": count,
    "duckdb_distinct_ids": distinct,
    "duckdb_acc": [a[0] for a in acc],
}))
