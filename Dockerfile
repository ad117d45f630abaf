# The pipeline image every Kubeflow task runs: TFX's official image with this project and
# its locked dependencies. Built by `make image` (= `mlops kfp image`), which tags it
# `kubeflow.image` from pipeline_config.yaml and passes kubeflow.project_dir as PROJECT_DIR.
ARG TFX_IMAGE=tensorflow/tfx:1.16.0
FROM ${TFX_IMAGE}

# Where the project lives in the image: the kubeflow profile's relative paths and the
# Beam --setup_file the compiled package names resolve here.
ARG PROJECT_DIR=/pipeline
WORKDIR ${PROJECT_DIR}

# The same pins as a laptop's .venv (requirements.lock), installed with uv: pip's resolver
# backtracks for many minutes on this graph.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir uv \
    && python -m uv pip install --system --no-cache -r requirements.lock

COPY setup.py ./
COPY pipeline ./pipeline
COPY components ./components
COPY models ./models
COPY serving ./serving
RUN python -m uv pip install --system --no-cache --no-deps -e .

# Each task runs `python -m pipeline.kubeflow.entrypoint ...` (the compiled command).
ENV PYTHONPATH=${PROJECT_DIR} PYTHONUNBUFFERED=1
ENTRYPOINT []
