"""Writing outputs so that a crash never leaves a half-written export that looks complete."""

from __future__ import annotations

import json
from typing import Any

from . import storage

SUCCESS_MARKER = "_SUCCESS"  # written last into a finished export, as Hadoop output committers do
MODEL_FILE = "model.keras"


def write_json(path: str, value: Any) -> None:
    storage.write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str) -> Any:
    return json.loads(storage.read_bytes(path).decode("utf-8"))


def staging_dir(export_dir: str, run_id: str) -> str:
    return f"{export_dir.rstrip('/')}.staging-{run_id}"


def is_complete(export_dir: str) -> bool:
    return storage.exists(storage.join(export_dir, SUCCESS_MARKER)) and storage.exists(
        storage.join(export_dir, MODEL_FILE)
    )


def publish(staging: str, export_dir: str, run_id: str, marker: str | None = SUCCESS_MARKER,
            last: str | None = None) -> None:
    """Marks the staging dir complete (unless its own file `last` marks it), then makes it export_dir;
    an older export there is replaced only once the new one is whole (storage/publish.py)."""
    from .storage.publish import publish_tree

    if marker is not None:
        write_json(storage.join(staging, marker), {"run_id": run_id})
    publish_tree(staging, export_dir, marker or last or SUCCESS_MARKER, run_id)
