"""From unpacked archives to --dest: checks that --dest may be written, unpacks into a stage folder beside
it, finds the faces/ and comics/ folders in whatever layout the archives use, and moves the finished data set
into place in one rename, so --dest holds the complete data set or is left as it was."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from typing import TextIO

from ..data.discover import CLASS_LABELS, IMAGE_EXTENSIONS
from .archives import Budget
from .disk import ensure_writable_dir
from .errors import DownloadError, UsageError
from .sources import Source, unpack_source

CLASS_DIRS = tuple(CLASS_LABELS)  # ('faces', 'comics'): the folders jobs/train.py --data-dir reads
TRAIN_COMMAND = "spark-submit --properties-file conf/spark-defaults.conf jobs/train.py --input-mode spark --data-dir"


def train_command(dest: str) -> str:
    return f"{TRAIN_COMMAND} {shlex.quote(dest)}"


# ---------------------------------------------------------------------------------------------- --dest


def _dest_entries(dest: str) -> list[str]:
    try:
        return sorted(os.listdir(dest))
    except OSError as exc:
        raise UsageError(f"--dest {dest!r} cannot be read ({exc.strerror}); pick a folder you own") from exc


def check_dest(dest: str, overwrite: bool) -> None:
    """Refuses a --dest that is a file, holds data, or cannot be written, before anything is downloaded."""
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise UsageError(f"--dest {dest!r} is a file, not a folder; pass a folder path (it is created)")
    if os.path.isdir(dest):
        entries = _dest_entries(dest)
        # --overwrite swaps out only what this command makes, so a mistyped --dest (say, $HOME) is never wiped.
        others = [e for e in entries if e not in CLASS_DIRS]
        if others:
            raise UsageError(f"--dest {dest!r} holds other files ({', '.join(others[:5])}); it must be new, empty "
                             "or a data set made by this command (--overwrite); choose another folder")
        if entries and not overwrite:
            raise UsageError(f"--dest {dest!r} already holds a data set; pass --overwrite to replace it, "
                             "or choose another folder")
    parent = os.path.dirname(dest)
    ensure_writable_dir(parent, "--dest's parent folder")


# ---------------------------------------------------------------------------------------------- finding the classes


def count_images(folder: str) -> int:
    n = 0
    for _dirpath, _dirs, files in os.walk(folder):
        n += sum(1 for f in files if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return n


def _skip_dir(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"  # macOS zips carry a shadow tree of ._ files


def find_class_dirs(root: str) -> dict[str, list[str]]:
    """Folders named faces/ or comics/ at any depth under root (not looking inside them)."""
    found: dict[str, list[str]] = {c: [] for c in CLASS_DIRS}
    for dirpath, dirs, _files in os.walk(root):
        for d in list(dirs):
            if d.lower() in found:
                found[d.lower()].append(os.path.join(dirpath, d))
                dirs.remove(d)
            elif _skip_dir(d):
                dirs.remove(d)
        dirs.sort()
    return found


def _image_dirs(root: str) -> list[str]:
    dirs_with_images = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skip_dir(d))
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            dirs_with_images.append(dirpath)
    return dirs_with_images


def _hinted_dir(cls: str, unpacked: Sequence[tuple[str, str]]) -> str | None:
    """For an archive named after one class (v2's ..._faces.tar) without a class folder inside: its one
    folder of images is that class."""
    # Whole words only: 'face2comics' in every file name must not read as 'comics'.
    hinted = [root for name, root in unpacked if set(re.split(r"[^a-z0-9]+", name.lower())) & set(CLASS_DIRS) == {cls}]
    if len(hinted) != 1:
        return None
    image_dirs = _image_dirs(hinted[0])
    return image_dirs[0] if len(image_dirs) == 1 else None


def _rel(path: str, base: str) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def locate_classes(unpacked: Sequence[tuple[str, str]], stage: str) -> dict[str, str]:
    """{'faces': folder, 'comics': folder} among the unpacked archives ((archive name, folder) pairs)."""
    chosen: dict[str, str] = {}
    for cls in CLASS_DIRS:
        candidates = [d for _, root in unpacked for d in find_class_dirs(root)[cls]]
        with_images = [d for d in candidates if count_images(d)]
        if len(with_images) > 1:
            listed = ", ".join(_rel(d, stage) for d in with_images)
            raise DownloadError(f"the archives hold several {cls}/ folders ({listed}); unpack the one you want "
                                "by hand and pass it to jobs/train.py --data-dir")
        if with_images:
            chosen[cls] = with_images[0]
            continue
        hinted = _hinted_dir(cls, unpacked)
        if hinted:
            chosen[cls] = hinted
            continue
        names = ", ".join(name for name, _ in unpacked)
        what = "holds no images" if candidates else "is missing"
        raise DownloadError(f"{cls}/ {what} in {names}; is this the face2comics data set? "
                            "(v2 needs both tars: pass --from twice, faces and comics)")
    return chosen


# ---------------------------------------------------------------------------------------------- staging, installing


def make_stage(dest: str) -> str:
    """An empty folder beside dest, so the final os.replace is a rename within one file system."""
    try:
        return tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.unpack-", dir=os.path.dirname(dest))
    except OSError as exc:
        raise UsageError(f"cannot create a folder beside --dest {dest!r} ({exc.strerror}); "
                         "pick a writable location") from exc


def assemble(unpacked: Sequence[tuple[str, str]], stage: str) -> tuple[str, dict[str, int]]:
    """Moves the class folders into stage/dataset; returns it and the image count of each class."""
    dataset = os.path.join(stage, "dataset")
    os.makedirs(dataset)
    counts = {}
    for cls, folder in locate_classes(unpacked, stage).items():
        os.replace(folder, os.path.join(dataset, cls))
        counts[cls] = count_images(os.path.join(dataset, cls))
    return dataset, counts


def install(dataset: str, dest: str, stage: str) -> None:
    """Puts the complete data set at dest in one rename; an old data set (--overwrite) goes to the stage,
    which is deleted afterwards, and comes back if the rename fails."""
    old = None
    if os.path.isdir(dest):
        old = os.path.join(stage, "previous")
        os.replace(dest, old)
    try:
        os.replace(dataset, dest)
    except OSError as exc:
        if old:
            os.replace(old, dest)
        raise DownloadError(f"cannot move the data set into {dest!r} ({exc.strerror}); "
                            "check --dest's permissions") from exc


def unpack_all(sources: Sequence[Source], archives: Sequence[str], dest: str, budget: Budget, overwrite: bool,
               err: TextIO) -> dict[str, int]:
    """Unpacks every archive into a stage beside dest and moves the data set into place; the stage is
    deleted whatever happens, so dest holds the complete data set or is untouched."""
    stage = make_stage(dest)
    try:
        unpacked = []
        for i, (source, path) in enumerate(zip(sources, archives, strict=True)):
            err.write(f"unpacking {source.name}\n")
            root = os.path.join(stage, f"archive-{i}")
            unpack_source(source, path, root, budget)
            unpacked.append((source.name, root))
        dataset, counts = assemble(unpacked, stage)
        check_dest(dest, overwrite)  # again: another process may have written there meanwhile
        install(dataset, dest, stage)
        return counts
    finally:
        shutil.rmtree(stage, ignore_errors=True)
