"""The suite's own data set: the embedded 35-pair sample, augmented into N full-size JPEGs (1024 px, like
the real face2comics v2) in the face2comics layout, deterministically."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from tfos_facecnn import sample_data_dir
from tfos_facecnn.config import TrainConfig
from tfos_facecnn.data.split import TEST, TRAIN, VAL, split_of

JPEG_QUALITY = 90
CLASSES = ("faces", "comics")


def job_config() -> TrainConfig:
    """The split settings the jobs resolve (conf/train.yaml)."""
    from tfos_facecnn.cli import parse_train_args

    return parse_train_args([])[0]


def split_quotas(pairs: int, cfg: TrainConfig) -> dict[str, int]:
    """Pairs per split as the configured fractions give them, at least one pair in val and test."""
    test = max(1, round(pairs * cfg.val_fraction * cfg.test_fraction_of_val))
    val = max(1, round(pairs * cfg.val_fraction) - test)
    return {TRAIN: pairs - val - test, VAL: val, TEST: test}


def pair_names(pairs: int, cfg: TrainConfig) -> list[str]:
    """File names whose hash split (the job's own split function) fills the quotas exactly, so even a
    tiny data set has every split, and every mode and job sees the same split."""
    quotas, names, candidate = split_quotas(pairs, cfg), [], 0
    while len(names) < pairs:
        name = f"{candidate}.jpg"
        split = split_of(name, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val)
        if quotas[split] > 0:
            quotas[split] -= 1
            names.append(name)
        candidate += 1
    return names


def _augment(image: Image.Image, size: int, params: dict) -> Image.Image:
    width, height = image.size
    scale, fx, fy = params["scale"], params["fx"], params["fy"]
    crop_w, crop_h = int(width * scale), int(height * scale)
    left, top = int((width - crop_w) * fx), int((height - crop_h) * fy)
    image = image.crop((left, top, left + crop_w, top + crop_h)).resize((size, size), Image.Resampling.BICUBIC)
    if params["flip"]:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(params["brightness"])
    image = ImageEnhance.Contrast(image).enhance(params["contrast"])
    return ImageEnhance.Color(image).enhance(params["saturation"])


def _generate_pairs(task: tuple[str, list[tuple[int, str]], int, int]) -> int:
    """Writes the pairs (index, name) of one chunk; returns their bytes (one worker process's share)."""
    root, chunk, size, seed = Path(task[0]), task[1], task[2], task[3]
    sample = Path(sample_data_dir())
    sources = sorted(p.name for p in (sample / "faces").glob("*.jpg"))
    total_bytes = 0
    for index, name in chunk:
        rng = np.random.default_rng([seed, index])
        geometry = {"scale": rng.uniform(0.8, 1.0), "fx": rng.uniform(), "fy": rng.uniform(),
                    "flip": bool(rng.integers(2))}
        source = sources[index % len(sources)]
        for cls in CLASSES:
            params = {**geometry, "brightness": rng.uniform(0.85, 1.15), "contrast": rng.uniform(0.85, 1.15),
                      "saturation": rng.uniform(0.85, 1.15)}
            with Image.open(sample / cls / source) as original:
                image = _augment(original.convert("RGB"), size, params)
            target = root / cls / name
            image.save(target, format="JPEG", quality=JPEG_QUALITY)
            total_bytes += target.stat().st_size
    return total_bytes


# Pairs per task of a parallel generation: large enough that a task's start costs nothing.
GENERATE_CHUNK = 250


def generate(root: Path, images: int, size: int = 1024, seed: int = 1234, processes: int = 1) -> dict:
    """images/2 face/comic pairs of size x size JPEGs under root/faces and root/comics. A pair's face and
    comic get the same crop and flip (they stay aligned, like the real pairs), colour jitter differs.
    Each pair depends only on (seed, its index), so `processes` > 1 writes the same files."""
    pairs = max(images // 2, 3)
    cfg = job_config()
    names = list(enumerate(pair_names(pairs, cfg)))
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
    tasks = [(str(root), names[start:start + GENERATE_CHUNK], size, seed)
             for start in range(0, len(names), GENERATE_CHUNK)]
    if processes > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            total_bytes = sum(pool.map(_generate_pairs, tasks))
    else:
        total_bytes = sum(_generate_pairs(task) for task in tasks)
    return {"root": str(root), "images": 2 * pairs, "pairs": pairs, "size": size, "bytes": total_bytes,
            "split_pairs": split_quotas(pairs, cfg)}


def replicate(source: Path, target: Path, copies: int) -> int:
    """A face2comics folder with every pair of `source` `copies` times under new names (same split
    proportions: names are drawn again from the split function); returns the image count."""
    cfg = job_config()
    pairs = sorted(p.name for p in (source / "faces").iterdir())
    names = pair_names(len(pairs) * copies, cfg)
    by_split: dict[str, list[str]] = {}
    for name in pairs:
        by_split.setdefault(split_of(name, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val), []).append(name)
    count = 0
    for cls in CLASSES:
        (target / cls).mkdir(parents=True, exist_ok=True)
    used: dict[str, int] = {}
    for name in names:
        split = split_of(name, cfg.split_seed, cfg.val_fraction, cfg.test_fraction_of_val)
        group = by_split.get(split) or pairs
        original = group[used.get(split, 0) % len(group)]
        used[split] = used.get(split, 0) + 1
        for cls in CLASSES:
            shutil.copyfile(source / cls / original, target / cls / name)
            count += 1
    return count
