"""A Spark DataFrame as a run's data: its columns and labels checked, and its rows turned into images.

A table has a label column and either a binary image column (spark.read.format("binaryFile")'s
`content`) or a path column naming image files; the names come from the config (image_column,
label_column, path_column, key_column). Before TF starts, the schema is checked (cheap) and the label
values with one small Spark job (distinct, limited). On the executors each row becomes (name, label,
split, its image loaded): the split is `split_of(key)`, the hash the folder source uses, so it is
deterministic; only small fields ever come back to the driver. Pyspark is imported inside functions:
the module is imported by the CLI before any session starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import storage
from ..config import ConfigError
from .discover import CLASS_LABELS, LABEL_NAMES
from .images import LoadedImage, image_from_bytes, load_image
from .split import TRAIN, split_of

# Accepted class names in a string label column, any case: faces/comics and the singular face/comic.
LABEL_WORDS = {**CLASS_LABELS, **{name[:-1]: label for name, label in CLASS_LABELS.items()}}
ACCEPTED_LABELS = "1/0 or true/false (1 = face), or faces/comics (also face/comic, any case)"
DISTINCT_LABELS_READ = 20  # the label check reads at most this many distinct values: a few more than are valid
BAD_LABELS_SHOWN = 3  # bad label values an error names
IN_MEMORY = "DataFrame"  # the source named in data.json and the manifest for a table passed from Python
NO_IMAGE = "no image bytes (null)"


@dataclass(frozen=True)
class TableColumns:
    """The column names a table is read by (TrainConfig's image_column, label_column, path_column, key_column)."""

    image: str = "content"
    label: str = "label"
    path: str = "path"
    key: str = "path"

    @classmethod
    def of(cls, cfg: Any) -> TableColumns:
        return cls(cfg.image_column, cfg.label_column, cfg.path_column, cfg.key_column)


@dataclass(frozen=True)
class TableSource:
    """A checked table (driver only: it holds the DataFrame)."""

    frame: Any
    columns: TableColumns
    image_column: str | None  # the binary column read, or None: the images are read from columns.path
    name_column: str  # names a row in skip lists and predictions: the path column if any, else the key
    description: str  # data.json's root and the manifest's source

    @property
    def reads(self) -> str:
        return self.image_column or self.columns.path


def table_description(path: str | None, data_format: str) -> str:
    return f"{path} ({data_format} table)" if path else IN_MEMORY


def label_value(value: Any) -> int | None:
    """A label cell -> 1 (face) or 0 (comic); None for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value in LABEL_NAMES else None
    if isinstance(value, str):
        return LABEL_WORDS.get(value.strip().lower())
    return None


def _kind(data_type: Any) -> str:
    from pyspark.sql.types import BinaryType, BooleanType, IntegralType, StringType

    for kind, types in (("binary", BinaryType), ("string", StringType), ("integer", IntegralType),
                        ("boolean", BooleanType)):
        if isinstance(data_type, types):
            return kind
    return data_type.simpleString()


def _check_schema(frame: Any, columns: TableColumns) -> TableSource:
    kinds = {field.name: _kind(field.dataType) for field in frame.schema.fields}
    listed = ", ".join(kinds) or "none"
    if columns.label not in kinds:
        raise ConfigError(f"the DataFrame has no label column {columns.label!r} (its columns: {listed}); add one "
                          f"({ACCEPTED_LABELS}) or set label_column")
    if kinds[columns.label] not in ("integer", "boolean", "string"):
        raise ConfigError(f"label column {columns.label!r} is {kinds[columns.label]}; give {ACCEPTED_LABELS}, or set "
                          "label_column to such a column")
    image = columns.image if columns.image in kinds else None
    if image is not None and kinds[image] != "binary":
        raise ConfigError(f"image column {image!r} is {kinds[image]}, not binary; give the image bytes (as "
                          "spark.read.format('binaryFile') does in 'content'), or set image_column to a binary column "
                          "(or to a name the table lacks, to read the images from path_column)")
    if image is None and columns.path not in kinds:
        raise ConfigError(f"the DataFrame has neither the image column {columns.image!r} nor the path column "
                          f"{columns.path!r} (its columns: {listed}); set image_column (image bytes) or path_column "
                          "(image paths)")
    if image is None and kinds[columns.path] != "string":
        raise ConfigError(f"path column {columns.path!r} is {kinds[columns.path]}, not string; give image paths or "
                          "URIs, or set path_column")
    if columns.key not in kinds:
        raise ConfigError(f"the DataFrame has no key column {columns.key!r}, the split's hash key (its columns: "
                          f"{listed}); set key_column to a column naming each image, or its face/comic pair")
    if kinds[columns.key] not in ("string", "integer"):
        raise ConfigError(f"key column {columns.key!r} is {kinds[columns.key]}; the split's hash key must be a "
                          "string or an integer: set key_column")
    name = columns.path if columns.path in kinds else columns.key
    return TableSource(frame, columns, image, name, IN_MEMORY)


def _check_labels(frame: Any, column: str) -> None:
    """One small Spark job: the label column's distinct values (a few at most), each one accepted, both classes."""
    values = [row[0] for row in frame.select(column).distinct().limit(DISTINCT_LABELS_READ).collect()]
    bad = [value for value in values if label_value(value) is None]
    if bad:
        shown = ", ".join(repr(value) for value in bad[:BAD_LABELS_SHOWN]) + (" ..." if len(bad) > BAD_LABELS_SHOWN
                                                                              else "")
        raise ConfigError(f"label column {column!r} holds {shown}; accepted: {ACCEPTED_LABELS}")
    classes = {label_value(value) for value in values}
    if classes != set(LABEL_NAMES):
        have = ", ".join(LABEL_NAMES[c] for c in sorted(classes)) or "no rows"
        raise ConfigError(f"label column {column!r} holds {'only ' if classes else ''}{have}; the table needs faces "
                          "(1) and comics (0)")


def table_source(frame: Any, columns: TableColumns, description: str = IN_MEMORY, cv_folds: int = 0) -> TableSource:
    """A DataFrame checked as a run's data: ConfigError naming the column or setting and the fix, before any
    TF node starts."""
    if cv_folds:
        raise ConfigError("cross-validation (cv_folds) reads a face2comics folder; a data table is not supported: "
                          "pass --data-dir")
    source = _check_schema(frame, columns)
    _check_labels(frame, columns.label)
    return TableSource(frame, columns, source.image_column, source.name_column, description)


def data_argument(data: Any) -> tuple[str | None, Any]:
    """train's and prepare's `data=`: None, a folder path or URI, or a Spark DataFrame -> (folder, DataFrame)."""
    if data is None:
        return None, None
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data), None
    from pyspark.sql import DataFrame

    if isinstance(data, DataFrame):
        return None, data
    raise ConfigError(f"data= takes a folder path or URI, or a Spark DataFrame, not a {type(data).__name__}; pass "
                      "one of those")


def table_reads(path: str) -> dict[str, str]:
    """Before Spark starts: a local table path must exist; a URI of a scheme the storage layer knows is
    checked with the other inputs (the returned option -> URI, for storage.access.prepare_storage); any
    other (dbfs:/, wasbs://...) is Spark's own to open."""
    from ..storage.schemes import UnknownSchemeError, scheme_for

    if storage.is_local(path):
        if not storage.exists(path):
            raise ConfigError(f"--data-table {path!r} does not exist; pass the folder (or file) of the table")
        return {}
    try:
        scheme_for(path)
    except UnknownSchemeError:
        return {}
    return {"--data-table": path}


def open_table(spark: Any, path: str, data_format: str, columns: TableColumns, cv_folds: int = 0) -> TableSource:
    """--data-table through Spark's own reader (once the session is open), checked like a DataFrame passed in."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        frame = spark.read.format(data_format).load(path)
    except (PySparkException, Py4JJavaError) as e:
        # an unknown format reaches Python unconverted (a Py4JJavaError): its Java message says what is wrong
        said = e.java_exception.getMessage() if isinstance(e, Py4JJavaError) else str(e)
        first = said.strip().splitlines()[0] if said and said.strip() else type(e).__name__
        raise ConfigError(f"--data-table {path!r} could not be read as --data-format {data_format!r}: {first}; "
                          "check the path and the format") from e
    return table_source(frame, columns, table_description(path, data_format), cv_folds)


def _loaded(value: Any, from_bytes: bool, image_size: int) -> LoadedImage:
    if value is None:
        return LoadedImage(None, NO_IMAGE if from_bytes else "null path", None)
    return image_from_bytes(bytes(value), image_size) if from_bytes else load_image(value, image_size)


def row_loader(columns: TableColumns, image_column: str | None, name_column: str, settings: Any) -> Callable:
    """Executor side: rows -> (name, label, split, LoadedImage). `settings` (a TrainConfig or PrepareConfig)
    gives the image size, the split settings and the storage options; only plain values are captured."""
    size, seed, val, test = settings.image_size, settings.split_seed, settings.val_fraction, \
        settings.test_fraction_of_val
    options = dict(settings.storage)
    reads = image_column or columns.path

    def load(rows: Iterator[Any]) -> Iterator[tuple[str, int | None, str, LoadedImage]]:
        storage.configure(options)
        for row in rows:
            key, name, label = row[columns.key], row[name_column], label_value(row[columns.label])
            name = str(name) if name is not None else f"<null {name_column}>"
            if key is None:  # no split can be computed: skipped, named
                yield name, label, TRAIN, LoadedImage(None, f"null key column {columns.key!r}", None)
            elif label is None:  # the table changed since its labels were checked
                yield name, label, TRAIN, LoadedImage(None, f"label {row[columns.label]!r}: {ACCEPTED_LABELS}", None)
            else:
                yield name, label, split_of(str(key), seed, val, test), _loaded(row[reads], image_column is not None,
                                                                                  size)

    return load


def table_images(table: TableSource, settings: Any, decode_tasks: int) -> Any:
    """The table's rows as an RDD of (name, label, split, LoadedImage), loaded on the executors: straight
    from the image column's bytes (no second read), or from the files the path column names (that
    small column repartitioned to `decode_tasks`, so every core decodes)."""
    columns = table.columns
    frame = table.frame.select(*dict.fromkeys([table.reads, columns.label, columns.key, table.name_column]))
    if table.image_column is None:
        frame = frame.repartition(decode_tasks)
    return frame.rdd.mapPartitions(row_loader(columns, table.image_column, table.name_column, settings))
