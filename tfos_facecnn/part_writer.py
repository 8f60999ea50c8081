"""Prediction rows written to a storage URI in the layout of Spark's writers: part files + _SUCCESS.

pyspark's own writers reach s3://, gs:// and abfs:// only through Hadoop connectors (hadoop-aws'
s3a and the like: jars that pyspark does not ship), so for a URI each partition writes its part file
through the project's storage layer into a staging prefix, published with _SUCCESS written last.
Local outputs still use Spark's writers (inference.predict).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import storage
from .config import ConfigError
from .export import staged_output
from .inference import PREDICTION_COLUMNS as COLUMNS


def parquet_available() -> None:
    """Parquet part files need pyarrow on the driver and the executors; a clear line otherwise."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ConfigError("--format parquet to a storage URI needs pyarrow: pip install 'tfos-facecnn[parquet]' "
                          "on the driver and every executor, or use --format csv") from e


def _csv(rows: list[tuple]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return out.getvalue().encode("utf-8")


def _parquet(rows: list[tuple]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
    table = pa.table({
        "path": pa.array(columns[0], pa.string()),
        "p_face": pa.array(columns[1], pa.float64()),
        "predicted": pa.array(columns[2], pa.string()),
        "error": pa.array(columns[3], pa.string()),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _json(rows: list[tuple]) -> bytes:
    """JSON lines as Spark's writer makes them (compact, UTF-8), with nulls kept (inference.WRITER_OPTIONS)."""
    return "".join(json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False, separators=(",", ":")) + "\n"
                   for row in rows).encode("utf-8")


ENCODERS: dict[str, Callable[[list[tuple]], bytes]] = {"csv": _csv, "parquet": _parquet, "json": _json}


def part_writer(staging: str, fmt: str, storage_options: dict[str, Any]) -> Callable:
    """Executor side: one partition's rows -> STAGING/part-NNNNN.FMT."""

    def write(index: int, rows: Iterable[tuple]) -> Iterator[str]:
        storage.configure(storage_options)
        name = f"part-{index:05d}.{fmt}"
        storage.write_bytes_atomic(storage.join(staging, name), ENCODERS[fmt](list(rows)))
        yield name

    return write


def write_parts(rows, output: str, fmt: str, storage_options: dict[str, Any]) -> list[str]:
    """Writes the RDD of prediction rows to `output` (replacing what is there); returns the part names."""
    with staged_output(output) as staging:
        return rows.mapPartitionsWithIndex(part_writer(staging, fmt, storage_options)).collect()
