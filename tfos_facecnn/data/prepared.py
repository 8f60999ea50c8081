"""A prepared data set's manifest.json: its one writer and reader.

jobs/prepare.py writes TFRecord shards per split and, last, this manifest (counts per split and class,
every shard with its record count, the image size and record format, the source folder, the split
settings, every skipped file): a folder without it is never a finished data set. TENSORFLOW-mode
training and the evaluate job read it back through `load_prepared`, checked against their settings.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import storage
from ..config import ConfigError
from ..export import read_json
from .discover import LABEL_NAMES
from .split import SPLITS

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PreparedData:
    """A finished prepared data set: where it is and what its manifest says."""

    path: str
    manifest: dict[str, Any]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return self.manifest["counts"]

    @property
    def shards(self) -> dict[str, list[dict[str, Any]]]:
        return self.manifest["shards"]

    @property
    def record_format(self) -> str:
        return self.manifest["record_format"]

    @property
    def source(self) -> str:
        return self.manifest["source"]

    def summary(self) -> dict[str, Any]:
        """What a run on this data set trained on, as data.json records it."""
        return {"root": self.source, "prepared_dir": self.path, "counts": self.counts,
                "skipped": self.manifest["skipped"], "ignored": self.manifest["ignored"]}


def build_manifest(image_size: int, record_format: str, split_settings: dict[str, Any], root: str,
                   shards: list[dict[str, Any]], ignored: Iterable[str], excluded: list[dict[str, str]]) -> dict:
    """The manifest of freshly written shards (each {split, file, records, classes, skipped})."""
    counts = {split: {name: 0 for name in LABEL_NAMES.values()} for split in SPLITS}
    for shard in shards:
        for name, n in shard["classes"].items():
            counts[shard["split"]][name] += n
    for split in SPLITS:
        counts[split]["total"] = sum(counts[split].values())
    return {
        "format_version": FORMAT_VERSION,
        "source": root,
        "image_size": image_size,
        "record_format": record_format,
        "split": split_settings,
        "counts": counts,
        "shards": {split: [{"file": s["file"], "records": s["records"]} for s in shards if s["split"] == split]
                   for split in SPLITS},
        "skipped": sorted([*excluded, *(item for s in shards for item in s["skipped"])],
                          key=lambda item: item["path"]),
        "ignored": sorted(ignored),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def is_prepared(path: str) -> bool:
    return storage.exists(storage.join(path, MANIFEST))


def looks_prepared(path: str) -> bool:
    """A manifest, or the split folders of one: such a folder is never read as raw images."""
    return is_prepared(path) or any(storage.isdir(storage.join(path, split)) for split in SPLITS)


def load_prepared(path: str, image_size: int) -> dict[str, Any]:
    """The manifest of a finished prepared data set, checked against the training settings."""
    return open_prepared(path, image_size).manifest


def open_prepared(path: str, image_size: int) -> PreparedData:
    """A finished prepared data set, checked against the image size the caller needs."""
    manifest_path = storage.join(path, MANIFEST)
    if not storage.exists(manifest_path):
        raise ConfigError(
            f"{path!r} has no {MANIFEST}: it is not a finished prepared data set (an interrupted "
            "jobs/prepare.py leaves none); re-run jobs/prepare.py into it with --overwrite"
        )
    try:
        manifest = read_json(manifest_path)
    except ValueError as e:
        raise ConfigError(f"{manifest_path!r} is not valid JSON; re-run jobs/prepare.py with --overwrite") from e
    if manifest.get("image_size") != image_size:
        raise ConfigError(
            f"{path!r} was prepared at {manifest.get('image_size')} px but --image-size is {image_size}; "
            f"pass --image-size {manifest.get('image_size')} or prepare again with --image-size {image_size}"
        )
    missing = [s["file"] for split in SPLITS for s in manifest["shards"][split]
               if not storage.exists(storage.join(path, s["file"]))]
    if missing:
        raise ConfigError(
            f"{path!r}: {len(missing)} shard(s) listed in {MANIFEST} are missing (first: {missing[0]}); "
            "re-run jobs/prepare.py with --overwrite"
        )
    return PreparedData(path, manifest)
