"""tfos-facecnn: train a face-vs-comic CNN on Spark with TensorFlowOnSpark."""

from importlib import resources as _resources

__version__ = "0.1.0"


def sample_data_dir() -> str:
    """The embedded face2comics sample (35 real pairs, MIT): the default data set."""
    return str(_resources.files(__name__) / "sample_data" / "face2comics-sample")


def __getattr__(name: str):
    """`tfos_facecnn.predict_udf`, imported on first use: `import tfos_facecnn` stays light (no numpy, no
    Pillow) for the tools that need neither."""
    if name == "predict_udf":
        from .udf import predict_udf

        return predict_udf
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
