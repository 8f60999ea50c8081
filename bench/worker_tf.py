"""Single-process measurements, each run by bench/run.py in its own Python process; the result is the
last stdout line, as JSON.

  baseline       tf-keras fit of the job's model on prepared TFRecords, no Spark (figure a)
  plain          the plain script: TF defaults, images decoded into memory, fit on arrays (figure a0)
  export-images  a prepared dir's records written back out as a face2comics folder (input of c, e, g)
  predict        tfos_facecnn.inference.predict_paths in one process (figure h's reference)
  decode         decode_image and a naive Pillow decode + resize, ms per image (c2, d)
  ceiling        the model's training FLOPs per image and the machine's fp32 matmul peak (i)
  peers          N plain tf.keras scripts at once: MultiWorkerMirroredStrategy over 127.0.0.1, or
                 independent (no communication); e0, the peer of the job's scaling (e)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF's own defaults (oneDNN on), as the job's nodes now run: the baseline is the plain script a user writes.


def job_config(image_size: int, batch_size: int, epochs: int):
    """The configuration the train job resolves for the same options (conf/train.yaml + CLI)."""
    from tfos_facecnn.cli import parse_train_args

    cfg, _ = parse_train_args(["--image-size", str(image_size), "--batch-size", str(batch_size),
                               "--epochs", str(epochs)])
    return cfg


def epoch_timer(seconds: list[float]):
    """A Keras callback appending each epoch's wall time to `seconds`."""
    from tfos_facecnn.kerasenv import legacy_keras

    class Timer(legacy_keras().callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    return Timer()


def training_images(prepared: str, image_size: int):
    """A prepared set's training images decoded into memory, as the plain script holds them: (uint8 pixels
    N x size x size x 3, float32 labels)."""
    import numpy as np

    from tfos_facecnn.data.tfrecords import iter_examples

    root = Path(prepared)
    manifest = json.loads((root / "manifest.json").read_text())
    files = [str(root / shard["file"]) for shard in manifest["shards"]["train"]]
    examples = list(iter_examples(files, image_size, manifest["record_format"]))
    return (np.stack([pixels for pixels, _, _ in examples]),
            np.asarray([label for _, label, _ in examples], dtype=np.float32))


def baseline(args) -> dict:
    import tensorflow as tf

    from tfos_facecnn.model import build_from_config
    from tfos_facecnn.pipeline import tfrecord_dataset, train_steps_per_epoch

    threads = os.cpu_count() or 1  # what the job gives its one TF node on local[*]
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    cfg = job_config(args.image_size, args.batch_size, args.epochs)
    manifest = json.loads((Path(args.prepared) / "manifest.json").read_text())
    files = [str(Path(args.prepared) / s["file"]) for s in manifest["shards"]["train"]]
    records = manifest["counts"]["train"]["total"]
    steps = train_steps_per_epoch(records, cfg.batch_size)  # as the job: every image in every epoch
    dataset = tfrecord_dataset(files, cfg.image_size, manifest["record_format"], cfg.batch_size, cfg.seed,
                               epoch_records=steps * cfg.batch_size)
    model = build_from_config(cfg, training=True)
    seconds: list[float] = []
    model.fit(dataset, epochs=cfg.epochs, steps_per_epoch=steps, callbacks=[epoch_timer(seconds)], verbose=0)
    rates = [steps * cfg.batch_size / s for s in seconds]
    return {"images_per_s": rates, "steps_per_epoch": steps, "batch_size": cfg.batch_size, "threads": threads}


def plain(args) -> dict:
    """Figure a0: the plain one-process tf.keras script a user would write instead of the job: TF's
    defaults untouched (oneDNN as TF ships it, default thread pools), the same model and augmentation,
    the training images decoded into memory once, model.fit on the arrays."""
    import numpy as np

    from tfos_facecnn.model import build_from_config

    cfg = job_config(args.image_size, args.batch_size, args.epochs)
    x, y = training_images(args.prepared, cfg.image_size)
    x = x.astype(np.float32)
    model = build_from_config(cfg, training=True)
    seconds: list[float] = []
    model.fit(x, y, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, callbacks=[epoch_timer(seconds)],
              verbose=0)
    steps = -(-len(x) // cfg.batch_size)
    return {"images_per_s": [len(x) / s for s in seconds], "steps_per_epoch": steps, "images": len(x)}


def export_images(args) -> dict:
    """Each record's stored image bytes (the JPEG at the training size) under its source name, so the
    files keep their split; raw records are encoded as PNG under the same name (Pillow reads by content)."""
    import io

    import tensorflow as tf
    from PIL import Image

    root, out = Path(args.prepared), Path(args.out)
    manifest = json.loads((root / "manifest.json").read_text())
    size, fmt = manifest["image_size"], manifest["record_format"]
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "source": tf.io.FixedLenFeature([], tf.string)}
    count = 0
    for shards in manifest["shards"].values():
        for shard in shards:
            for serialized in tf.data.TFRecordDataset(str(root / shard["file"])):
                example = tf.io.parse_single_example(serialized, spec)
                data, source = example["image"].numpy(), example["source"].numpy().decode("utf-8")
                if fmt == "raw":
                    buffer = io.BytesIO()
                    Image.frombytes("RGB", (size, size), data).save(buffer, format="PNG")
                    data = buffer.getvalue()
                target = out / source
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                count += 1
    return {"images": count, "image_size": size}


def predict(args) -> dict:
    from tfos_facecnn.inference import expand_inputs, load_model, model_file, predict_paths

    model = load_model(model_file(args.model))
    paths = expand_inputs([args.input])
    list(predict_paths(model, paths[: args.batch_size], args.batch_size))  # traces predict_on_batch
    started = time.perf_counter()
    rows = list(predict_paths(model, paths, args.batch_size))
    seconds = time.perf_counter() - started
    errors = sum(1 for row in rows if row.error is not None)
    return {"images": len(rows), "errors": errors, "seconds": seconds, "images_per_s": len(rows) / seconds}


def decode(args) -> dict:
    from PIL import Image

    from tfos_facecnn.data.images import decode_image

    paths = sorted(str(p) for p in Path(args.data).rglob("*.jpg"))[: args.limit]
    blobs = [Path(p).read_bytes() for p in paths]  # read once: the figures are decode costs, not I/O
    started = time.perf_counter()
    for blob in blobs:
        decode_image(blob, args.image_size)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.convert("RGB").resize((args.image_size, args.image_size))
    naive = time.perf_counter() - started
    return {"images": len(paths), "decode_image_ms": 1000 * ours / len(paths),
            "naive_ms": 1000 * naive / len(paths), "naive_images_per_s": len(paths) / naive}


def model_flops(cfg) -> dict:
    """Multiply-adds of the inference graph from its layers' shapes: Conv2D out_h*out_w*filters*kh*kw*in_c,
    Dense in*units; FLOPs = 2 x MACs forward, x3 for a training step (forward + backward)."""
    from tfos_facecnn.model import build_from_config

    model = build_from_config(cfg, training=False)
    macs, per_layer = 0, {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, out_h, out_w, filters = layer.output.shape
            kh, kw = layer.kernel_size
            n = out_h * out_w * filters * kh * kw * layer.input.shape[-1]
        elif kind == "Dense":
            n = layer.input.shape[-1] * layer.units
        else:
            continue
        per_layer[layer.name] = int(n)
        macs += n
    return {"macs_forward": int(macs), "flops_forward": 2 * int(macs), "flops_train": 6 * int(macs),
            "macs_per_layer": per_layer, "parameters": int(model.count_params())}


def ceiling(args) -> dict:
    import numpy as np
    import tensorflow as tf

    n, repeats = args.matmul_size, args.matmul_repeats
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best_np = min(_timed(lambda: a @ b) for _ in range(repeats))
    ta, tb = tf.constant(a), tf.constant(b)
    tf.matmul(ta, tb).numpy()
    best_tf = min(_timed(lambda: tf.matmul(ta, tb).numpy()) for _ in range(repeats))
    flop = 2.0 * n**3
    return {"matmul_size": n, "numpy_gflops": flop / best_np / 1e9, "tf_gflops": flop / best_tf / 1e9,
            "peak_gflops": max(flop / best_np, flop / best_tf) / 1e9,
            **model_flops(job_config(args.image_size, 32, 1))}


def peers(args) -> dict:
    """N copies of the plain script at once, each with the thread pools the job gives a node on a 1-core
    executor: --workers 1 alone; --workers 2 under MultiWorkerMirroredStrategy (TF_CONFIG on
    127.0.0.1, batch_size per worker, as the job's weak scaling); --independent, each its own fit (no
    communication: what the machine gives two processes training at once). images_per_s: per epoch,
    summed over the processes (MultiWorkerMirroredStrategy's epochs end together: the chief's x N)."""
    import socket
    import subprocess

    ports = []
    for _ in range(args.workers):
        with socket.socket() as probe:  # free ports now; a clash fails the run loudly, never silently
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    common = ["--prepared", args.prepared, "--image-size", str(args.image_size), "--batch-size",
              str(args.batch_size), "--epochs", str(args.epochs), "--threads", str(args.threads)]
    children = [subprocess.Popen([sys.executable, __file__, "peer", *common, "--index", str(i), "--ports",
                                  ",".join(map(str, ports)), *(["--independent"] if args.independent else [])],
                                 stdout=subprocess.PIPE, text=True) for i in range(args.workers)]
    outs = []
    try:
        for child in children:
            stdout, _ = child.communicate(timeout=args.timeout)
            if child.returncode != 0:
                raise RuntimeError(f"peer process {len(outs)} exited {child.returncode} "
                                   "(its traceback is on stderr above)")
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:  # a failed or hung peer: the other one would wait on its collectives, holding a core
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    rates = [sum(epoch) for epoch in zip(*(out["images_per_s"] for out in outs), strict=True)]
    return {"images_per_s": rates, "per_process": [out["images_per_s"] for out in outs], "workers": args.workers,
            "independent": args.independent, "threads": args.threads, "steps_per_epoch": outs[0]["steps_per_epoch"]}


def peer(args) -> dict:
    """One process of `peers`: the training images decoded into memory (uint8, cast per batch), fit."""
    ports = args.ports.split(",")
    if len(ports) > 1 and not args.independent:
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                              "task": {"type": "worker", "index": args.index}})
    import tensorflow as tf

    from tfos_facecnn.model import build_from_config

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    distributed = "TF_CONFIG" in os.environ
    # before any op runs: MultiWorkerMirroredStrategy configures the collectives at TF's start-up
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if distributed else tf.distribute.get_strategy()
    cfg = job_config(args.image_size, args.batch_size, args.epochs)
    x, y = training_images(args.prepared, cfg.image_size)
    workers = len(ports) if distributed else 1
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # each worker every image per epoch, batch_size per worker: the global batch is batch_size x workers
    dataset = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=cfg.seed + args.index).repeat()
               .batch(cfg.batch_size * workers, drop_remainder=True)
               .map(lambda images, labels: (tf.cast(images, tf.float32), labels)).prefetch(2).with_options(options))
    with strategy.scope():
        model = build_from_config(cfg, training=True)
    steps = len(x) // cfg.batch_size
    seconds: list[float] = []
    model.fit(dataset, epochs=cfg.epochs, steps_per_epoch=steps, callbacks=[epoch_timer(seconds)], verbose=0)
    return {"images_per_s": [steps * cfg.batch_size / s for s in seconds], "steps_per_epoch": steps}


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("baseline")
    p.add_argument("--prepared", required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p = sub.add_parser("plain")
    p.add_argument("--prepared", required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p = sub.add_parser("export-images")
    p.add_argument("--prepared", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p = sub.add_parser("decode")
    p.add_argument("--data", required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--limit", type=int, default=400)
    p = sub.add_parser("ceiling")
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--matmul-repeats", type=int, default=5)
    for name in ("peers", "peer"):
        p = sub.add_parser(name)
        p.add_argument("--prepared", required=True)
        p.add_argument("--image-size", type=int, required=True)
        p.add_argument("--batch-size", type=int, required=True, help="per process")
        p.add_argument("--epochs", type=int, required=True)
        p.add_argument("--threads", type=int, default=1, help="TF's intra- and inter-op pools per process")
        p.add_argument("--independent", action="store_true")
    peers_parser, peer_parser = sub.choices["peers"], sub.choices["peer"]
    peers_parser.add_argument("--workers", type=int, required=True)
    peers_parser.add_argument("--timeout", type=float, default=600.0, help="seconds per process")
    peer_parser.add_argument("--index", type=int, required=True)
    peer_parser.add_argument("--ports", required=True)
    args = parser.parse_args(argv)
    handler = {"baseline": baseline, "plain": plain, "export-images": export_images, "predict": predict,
               "decode": decode, "ceiling": ceiling, "peers": peers, "peer": peer}[args.command]
    print(json.dumps(handler(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
