"""Installable package for the TFX pipeline, its components, models and serving.

Dependencies are pinned in requirements.lock (installed by `make setup`); the ranges here
only state what the code needs, so `pip install -e .` into a prepared environment works.
"""
from setuptools import find_packages, setup

setup(
    name="mlops-tfx-pipeline",
    version="0.1.0",
    description="TFX pipeline that trains, validates and pushes blessed models for TF Serving",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*",
                                    "models", "models.*", "serving", "serving.*"]),
    include_package_data=True,
    install_requires=[
        "tfx[kfp]==1.16.0",
        "kfp-kubernetes==1.0.0",  # PVC mounts in the Kubeflow package
        "apache-beam[gcp]==2.59.0",
        "tensorflow==2.16.2",
        "tensorflow-model-analysis==0.47.1",
        "tensorflow-serving-api>=2.16,<2.17",
        "pydantic>=2,<3",
        "typer>=0.9",
        "rich>=13",
        "pyyaml",
        "httptools>=0.6",  # the REST port's HTTP parser (serving/protocol/http.py)
        "uvloop>=0.19",  # the embedded server's event loop (serving/event_loop.py)
        "google-crc32c>=1.5",  # TFRecord framing for the request log (serving/tfrecord.py)
        "orjson>=3.9",  # the REST port's JSON where it writes what json does (json_codec.py)
        "pyarrow>=10,<11",  # columnar CSV ingestion (components/csv_columns.py)
    ],
    entry_points={"console_scripts": ["mlops=pipeline.cli.main:main"]},
)
