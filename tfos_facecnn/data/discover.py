"""Finds the face2comics layout (one folder per class) and lists its labelled image files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .. import storage
from ..config import ConfigError

# Label 1 is a real face photo, label 0 a comic face: the model's sigmoid output is P(face).
CLASS_LABELS = {"faces": 1, "comics": 0}
LABEL_NAMES = {label: name for name, label in CLASS_LABELS.items()}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# The Kaggle download nests the class folders one or two levels down.
MAX_NESTING = 2


@dataclass(frozen=True)
class LabelledFile:
    path: str  # full path or URI, as executors and TF nodes will open it
    key: str  # path inside the class folder ('12.jpg'): names a face/comic pair, drives the split
    label: int


@dataclass(frozen=True)
class Discovery:
    root: str  # the folder that holds faces/ and comics/
    files: tuple[LabelledFile, ...]
    ignored: tuple[str, ...]  # files without an image extension, relative to root


def find_dataset_root(data_dir: str) -> str:
    """Returns the folder holding both class folders: data_dir itself or one up to two levels below it."""
    if not storage.exists(data_dir):
        raise ConfigError(f"data dir {data_dir!r} does not exist; pass --data-dir with the face2comics folder")
    if not storage.isdir(data_dir):
        raise ConfigError(f"data dir {data_dir!r} is not a directory; pass the folder that holds faces/ and comics/")
    frontier = [data_dir]
    partial: list[str] = []
    for _depth in range(MAX_NESTING + 1):
        roots, next_frontier = [], []
        for folder in frontier:
            children = [c for c in storage.listdir(folder) if not c.startswith(".")]
            subdirs = [c for c in children if storage.isdir(storage.join(folder, c))]
            present = set(subdirs) & set(CLASS_LABELS)
            if present == set(CLASS_LABELS):
                roots.append(folder)
            elif present:
                partial.append(f"{storage.join(folder, present.pop())}")
            next_frontier += [storage.join(folder, d) for d in subdirs if d not in CLASS_LABELS]
        if len(roots) > 1:
            raise ConfigError(
                f"data dir {data_dir!r} holds several face2comics layouts ({', '.join(roots)}); "
                "pass --data-dir pointing at one of them"
            )
        if roots:
            return roots[0]
        frontier = next_frontier
    if partial:
        have = partial[0].rstrip("/").rsplit("/", 1)[-1]
        missing = (set(CLASS_LABELS) - {have}).pop()
        raise ConfigError(
            f"class folder '{missing}/' is missing beside {partial[0]!r}; "
            "the data dir needs both faces/ and comics/"
        )
    raise ConfigError(
        f"data dir {data_dir!r} has no faces/ and comics/ folders (searched {MAX_NESTING} levels down); "
        "pass --data-dir with the face2comics folder"
    )


def label_files(root: str, relative_paths: Iterable[str]) -> Discovery:
    """Labels files by their class folder; pure, so it is tested without touching storage."""
    files: list[LabelledFile] = []
    ignored: list[str] = []
    for rel in relative_paths:
        class_dir, _, key = rel.partition("/")
        if class_dir not in CLASS_LABELS or not key:
            continue
        if any(part.startswith(".") for part in rel.split("/")) or not key.lower().endswith(IMAGE_EXTENSIONS):
            ignored.append(rel)
            continue
        files.append(LabelledFile(storage.join(root, rel), key, CLASS_LABELS[class_dir]))
    return Discovery(root, tuple(files), tuple(ignored))


def discover(data_dir: str) -> Discovery:
    """Lists the labelled images under data_dir; an empty class is an error, never a silent 0."""
    root = find_dataset_root(data_dir)
    relative = []
    for class_dir in CLASS_LABELS:
        relative += [f"{class_dir}/{rel}" for rel in storage.walk_files(storage.join(root, class_dir))]
    found = label_files(root, relative)
    for class_dir, label in CLASS_LABELS.items():
        if not any(f.label == label for f in found.files):
            raise ConfigError(
                f"class folder {storage.join(root, class_dir)!r} holds no .jpg/.jpeg/.png files; "
                "add images or fix --data-dir"
            )
    return found
