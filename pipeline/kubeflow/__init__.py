"""Kubeflow Pipelines (open source, 2.x): compile the one pipeline, run it as KFP would, and
drive a KFP API server (upload, run, schedule).

TFX 1.16's `KubeflowV2DagRunner` writes a spec that open-source KFP cannot run as it is
(see the README's Kubeflow section); the modules here close those gaps without a second
copy of the pipeline's wiring, which stays in `pipeline/definition/builder.py`.
"""
