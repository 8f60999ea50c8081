"""tfos-facecnn: train a face-vs-comic CNN on Spark with TensorFlowOnSpark.

The Python API, for a pyspark shell or a notebook with its own SparkSession (the jobs/*.py scripts call
the same functions with a session of their own):

    from tfos_facecnn import TrainConfig, train, evaluate, EvaluateConfig, predict_udf
    result = train(spark, TrainConfig(epochs=5))          # a TrainResult: export dir, history, metrics
    report = evaluate(spark, EvaluateConfig(model=result.export_dir, split="test"))
    scored = images.withColumn("p_face", predict_udf(result.export_dir)("content"))
"""

from importlib import import_module as _import_module
from importlib import resources as _resources

__version__ = "0.1.0"

# The API's names and the modules that hold them, imported on first use: `import tfos_facecnn` stays
# light (no numpy, no Pillow, no Spark) for the tools that need none of them.
_API = {
    "TrainConfig": "config", "AugmentConfig": "config", "TrackingConfig": "config",
    "train": "driver", "TrainResult": "driver",
    "prepare": "preparation", "PrepareConfig": "preparation",
    "evaluate": "evaluation", "EvaluateConfig": "evaluation",
    "predict": "inference", "PredictConfig": "inference",
    "predict_udf": "udf",
    "crossval": "crossvalidation",
}
__all__ = ["__version__", "sample_data_dir", *_API]


def sample_data_dir() -> str:
    """The embedded face2comics sample (35 real pairs, MIT): the default data set."""
    return str(_resources.files(__name__) / "sample_data" / "face2comics-sample")


def __getattr__(name: str):
    if name in _API:
        return getattr(_import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
