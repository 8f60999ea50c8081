"""tf.data pipelines for the TF nodes: the Spark feed and labelled image files. TF is imported inside."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .data.images import ImageDecodeError, decode_image
from .storage import read_bytes

# Images per TFoS queue item: TFoS moves each item with three IPC round trips (put, get, task_done);
# chunks of 16 cut that overhead 16-fold, and 8 queued chunks (~2 s of a 1-core node's training here)
# bridge two tasks. A node that tops up its feed (modes.spark) draws chunks of the same size.
FEED_CHUNK = 16
# Items a node's feed shuffles over. Small on purpose: a node pulls from its TFoS queue only what it
# is about to train on, so Spark's executors share the data out in step with the nodes (a greedy node
# would take more than its share and starve another). Executors shuffle each partition too.
FEED_SHUFFLE_BUFFER = 64
# Batches a node prepares ahead of the model. Fixed, not AUTOTUNE: a float32 batch is 47 MB at 350 px
# and batch 32, and an autotuned buffer grows with the length of the run, so a node's memory would
# grow with the data set.
PREFETCH_BATCHES = 2


def worker_share(records: Sequence, num_workers: int, worker_index: int) -> list:
    """Every num_workers-th record from worker_index on; a worker left empty evaluates everything."""
    share = list(records[worker_index::num_workers])
    return share if share else list(records)


def steps_for(count: int, per_replica_batch: int) -> int:
    """Batches needed to see `count` items once (the last batch is topped up by repetition)."""
    return max(1, math.ceil(count / per_replica_batch))


def train_steps_per_epoch(train_count: int, global_batch: int) -> int:
    """Every training image once per epoch: the last global batch is topped up with repeats (SPARK mode:
    the driver pads each epoch's feed to steps x global batch; TENSORFLOW mode: each worker pads its
    epoch, see tfrecord_dataset)."""
    return max(1, math.ceil(train_count / global_batch))


def _as_model_input(tf, dataset):
    """uint8 through the pipeline (4x less to shuffle and cache), float32 at the model's door: the
    model's Input is float32, and a dtype mismatch makes tf-keras rebuild the Sequential graph."""
    return dataset.map(lambda x, y: (tf.cast(x, tf.float32), y))  # cheap; sequential keeps one batch in flight


def _options(tf):
    options = tf.data.Options()
    # Each worker builds its own share (Spark feed or a slice of the files): no auto-sharding on top.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # Elements in order: with the seeded shuffles a one-node run trains on the same batches every time.
    # Parallel decoding then waits for the slowest image of a batch, which costs little: the images
    # are alike (the TENSORFLOW-mode pipeline alone: ~1% slower, at ~13x what training consumes;
    # BENCHMARKS.md, "Every image in every epoch, reproducibility").
    options.deterministic = True
    # No tf.data autotuning: AUTOTUNE parallelism then means the thread pool's size (a node's cores).
    # Its optimizer thread sleeps up to a minute between rounds, and deleting an iterator waits for that
    # thread: fit() returned ~20 s after its last epoch in 2-node SPARK-mode runs (idle machine,
    # the main thread in RootDataset::Iterator's destructor), 2 s without it.
    options.autotune.enabled = False
    return options


def feed_dataset(chunks: Callable[[], Iterator[list[tuple[bytes, int]]]], image_size: int, per_replica_batch: int,
                 seed: int):
    """Chunks of (JPEG bytes at the training size, label) fed by Spark executors -> shuffled, decoded
    batches. A chunk crosses from Python into TF as one element (then unbatched): from_generator's
    per-element cost in the node's Python is paid once per chunk, not once per image."""
    import tensorflow as tf

    shape = (image_size, image_size, 3)

    def generate():
        for chunk in chunks():
            yield (np.array([encoded for encoded, _ in chunk], dtype=object),
                   np.array([label for _, label in chunk], dtype=np.float32))

    def decode(encoded, label):
        return tf.ensure_shape(tf.io.decode_jpeg(encoded, channels=3), shape), label

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(tf.TensorSpec((None,), tf.string), tf.TensorSpec((None,), tf.float32)),
    ).unbatch()
    dataset = dataset.shuffle(FEED_SHUFFLE_BUFFER, seed=seed)  # encoded: a cheap buffer to shuffle
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(per_replica_batch, drop_remainder=True)
    dataset = _as_model_input(tf, dataset).prefetch(PREFETCH_BATCHES)
    # The feed never ends (a node whose Spark feed ended tops up: modes.spark._FeedCounter); told so,
    # MultiWorkerMirroredStrategy drops its partial-batch handling (get_next_as_optional: a collective
    # per step on whether every worker still has data, and empty batches for one that has not, which
    # TF 2.21's oneDNN Conv2D mishandles). A feed that did end fails here, loudly, instead.
    return dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)).with_options(
        _options(tf))


def decode_file(path: str, image_size: int) -> np.ndarray:
    """Reads and decodes one image file; the driver has already checked it decodes."""
    try:
        return decode_image(read_bytes(path), image_size)
    except (OSError, ImageDecodeError) as e:
        raise RuntimeError(f"image {path!r} could not be read on this TF node: {e}") from e


def files_dataset(records: Sequence[tuple[str, int]], image_size: int, per_replica_batch: int, cache: bool):
    """(path, label) records -> decoded, batched, repeated forever (the caller fixes the steps)."""
    import tensorflow as tf

    paths = [path for path, _ in records]
    labels = np.asarray([label for _, label in records], dtype=np.float32)

    def load(path):
        pixels = tf.numpy_function(lambda p: decode_file(p.decode("utf-8"), image_size), [path], tf.uint8)
        return tf.ensure_shape(pixels, (image_size, image_size, 3))

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    dataset = dataset.repeat().batch(per_replica_batch, drop_remainder=True)
    return _as_model_input(tf, dataset).prefetch(PREFETCH_BATCHES).with_options(_options(tf))


def image_bytes(image_size: int) -> int:
    """Memory of one decoded image in a node's pipeline (uint8 RGB)."""
    return image_size * image_size * 3


def fits_in_memory(images: int, image_size: int, limit_mb: int) -> bool:
    """Whether a node keeps `images` decoded images in memory under a cache setting of `limit_mb` (0: off)."""
    return 0 < images * image_bytes(image_size) <= limit_mb * 2**20


def tfrecord_dataset(files: Sequence[str], image_size: int, record_format: str, per_replica_batch: int,
                     seed: int, epoch_records: int | None = None, resolve: Callable[[str], str] | None = None,
                     in_memory: bool = False):
    """This worker's shard files -> records interleaved from several files, parsed, batched, repeated
    forever (the caller fixes the steps, so no worker ever runs dry). `resolve` maps a shard's name to
    the local file to open (the node's shard cache), waiting for its download.

    Training (`epoch_records` given): shuffled, and each epoch is exactly `epoch_records` records (its
    steps x per-replica batch, at least the worker's records): one pass over every record of its files,
    then the start of a freshly shuffled pass to fill the last batch. So every training image is trained
    on in every epoch, whatever the number of workers. Without it (validation): in file order.

    `in_memory`: the records are decoded once and kept in memory (uint8, image_bytes each), and every
    epoch is a full shuffle of them; otherwise each epoch reads, shuffles (a buffer of encoded records)
    and decodes them again, so memory does not grow with the data."""
    import tensorflow as tf

    from .data.tfrecords import INTERLEAVE_FILES, SHUFFLE_BUFFER, parse_function

    shuffle = epoch_records is not None
    names = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if resolve is not None:
        names = names.map(lambda name: tf.ensure_shape(tf.numpy_function(
            lambda n: resolve(n.decode("utf-8")).encode("utf-8"), [name], tf.string, stateful=False), ()))
    records = names.interleave(  # one pass over every record of these files
        tf.data.TFRecordDataset,
        cycle_length=min(INTERLEAVE_FILES, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    parse = parse_function(image_size, record_format)
    if in_memory:
        # The first pass fills the cache; the shuffle's buffer (>= the records) takes all of it, so each
        # epoch is a permutation of tensors held once (a buffer holds references, not copies).
        images = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if shuffle:
            images = images.shuffle(epoch_records, seed=seed).repeat().take(epoch_records)
        images = images.repeat()
    else:
        if shuffle:
            records = records.shuffle(SHUFFLE_BUFFER, seed=seed)  # serialized records: cheap to shuffle
            # take() restarts the inner repeat on every outer repetition: each epoch begins a new pass.
            records = records.repeat().take(epoch_records)
        images = records.repeat().map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    batches = images.batch(per_replica_batch, drop_remainder=True)
    return _as_model_input(tf, batches).prefetch(PREFETCH_BATCHES).with_options(_options(tf))


def predict_stream(model, pixels: Iterable[np.ndarray], batch_size: int) -> np.ndarray:
    """P(face) for each image of a stream, predicted batch_size at a time: memory holds one batch of
    images, whatever the stream's length (no distribution strategy involved)."""
    def predict(batch: list[np.ndarray]) -> np.ndarray:
        return model.predict_on_batch(np.stack(batch).astype(np.float32)).reshape(-1)

    probabilities: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for image in pixels:
        batch.append(image)
        if len(batch) == batch_size:
            probabilities.append(predict(batch))
            batch = []
    if batch:
        probabilities.append(predict(batch))
    return np.concatenate(probabilities) if probabilities else np.zeros((0,), dtype=np.float32)


def predict_examples(model, examples: Iterable[tuple[np.ndarray, int, str]], batch_size: int
                     ) -> tuple[list[str], list[int], np.ndarray]:
    """(pixels, label, source) records, streamed -> their sources, labels and P(face) (predict_stream)."""
    sources: list[str] = []
    labels: list[int] = []

    def pixels() -> Iterator[np.ndarray]:
        for image, label, source in examples:
            sources.append(source)
            labels.append(label)
            yield image

    probabilities = predict_stream(model, pixels(), batch_size)
    return sources, labels, probabilities


def predict_files(model, paths: Sequence[str], image_size: int, batch_size: int) -> np.ndarray:
    """P(face) for each path, decoded as its batch is predicted (predict_stream)."""
    return predict_stream(model, (decode_file(path, image_size) for path in paths), batch_size)
