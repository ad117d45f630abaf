# Every target sets up .venv from requirements.lock first (a no-op when it is current).
PY := .venv/bin/python
MLOPS := .venv/bin/mlops
ARGS ?=

.PHONY: setup run serve test test-fast bench bench-serving bench-kubeflow bench-history bench-serving-options bench-scale check-config deploy-files kfp-compile image lock clean

setup:
	@scripts/bootstrap.sh

run: setup  ## Train, validate and push the model described by pipeline_config.yaml
	@$(MLOPS) run $(ARGS)

serve: setup  ## Serve the pushed versions: tensorflow_model_server if on PATH, else the embedded server
	@$(MLOPS) serve $(ARGS)

# Both cores: pytest-xdist; a worker takes whole modules (tests/conftest.py).
PYTEST := $(PY) -m pytest --numprocesses=auto
# The suite's hundred-odd processes import the same modules: they keep compiled bytecode
# even where the environment turns it off (an empty value is off for Python).
test test-fast: export PYTHONDONTWRITEBYTECODE :=

test: setup  ## The whole suite, slow end-to-end pipeline tests included
	@$(PYTEST) $(ARGS)

test-fast: setup  ## Everything but what trains: no pipeline run, no model trained
	@$(PYTEST) -m "not slow" $(ARGS)

bench: setup  ## Pipeline wall times: cold run and cached re-run
	@$(PY) bench/pipeline $(ARGS)

bench-serving: setup  ## Serving throughput and latency (REST, gRPC), push-to-answer time
	@$(PY) bench/serving $(ARGS)

bench-kubeflow: setup  ## The compiled Kubeflow package run as KFP does, beside mlops run
	@$(PY) bench/kubeflow $(ARGS)

bench-serving-options: setup  ## What TLS, the request log and a rollout cost the REST port (needs wrk)
	@$(PY) bench/serving_options $(ARGS)

bench-scale: setup  ## Time and memory at 15 k, 150 k and 1.5 M rows (the sample repeated)
	@$(PY) bench/scale $(ARGS)

bench-history: setup  ## mlops history over 100 runs
	@$(PY) bench/history $(ARGS)

check-config: setup
	@$(MLOPS) check-config $(ARGS)

deploy-files: setup  ## Regenerate serving/deploy/ (docker compose, Kubernetes) from the config
	@$(MLOPS) deploy-files $(ARGS)

kfp-compile: setup  ## Compile the pipeline for Kubeflow Pipelines (kubeflow profile)
	@$(MLOPS) kfp compile $(ARGS)

image: setup  ## Build the pipeline image (Dockerfile) tagged kubeflow.image; ARGS=--push pushes it
	@$(MLOPS) kfp image $(ARGS)

lock:  ## Re-resolve requirements.in into requirements.lock (needs uv and Python 3.10)
	uv pip compile requirements.in --python-version 3.10 --python-platform x86_64-manylinux_2_31 -o requirements.lock

clean:
	rm -rf build serving_models .pytest_cache
