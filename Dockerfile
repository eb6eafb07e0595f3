# syntax=docker/dockerfile:1
# Two images from one file, both built from the same wheels:
#   docker build --target worker-runtime -t <registry>/conductor-worker-runtime:0.1.0 .
#   docker build --target operator       -t <registry>/conductor-worker-operator:0.1.0 .
# Both final stages run as UID 10001 without pip, setuptools or wheel: nothing in them can build or
# install packages. To ship workers with extra dependencies, install those in a stage of your own
# (`pip install --no-cache-dir --target /deps ...`) and `COPY --from=that /deps /workers/`, next to
# your modules: /workers is on the runtime's import path (CONDUCTOR_WORKER_PATH).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- builder: wheels of the project and of every dependency --------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker_runtime/ worker_runtime/
COPY operator/ operator/
# /wheels/project: this project only; /wheels/deps: the dependencies (pure-Python or manylinux wheels).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/project . \
 && pip wheel --no-cache-dir --wheel-dir /wheels/deps /wheels/project/*.whl \
 && rm /wheels/deps/conductor_worker_operator-*.whl

# ---- base of both final images --------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 conductor \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin conductor

# ---- worker-runtime: the `conductor-worker` CLI and only what it imports (requests, prometheus-client)
FROM base AS worker-runtime
# The wheels are bind-mounted from the builder, so none of them stays in a layer; pip goes last.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels/deps /wheels/deps/requests-*.whl /wheels/deps/prometheus_client-*.whl \
 && pip install --no-cache-dir --no-index --no-deps /wheels/project/conductor_worker_operator-*.whl \
 && pip uninstall --yes pip setuptools wheel \
 && mkdir -p /workers \
 && conductor-worker --help >/dev/null
ENV CONDUCTOR_WORKER_PATH=/workers \
    CONDUCTOR_WORKER_METRICS_PORT=8000
WORKDIR /workers
USER 10001:10001
EXPOSE 8000
# Images built FROM this one copy their worker modules into /workers and list them in
# CONDUCTOR_WORKER_MODULES (or the ConductorWorker's spec.modules).
ENTRYPOINT ["conductor-worker"]
CMD ["run"]

# ---- operator: the `conductor-operator` CLI (kopf, kubernetes client and the rest) ---------------
FROM base AS operator
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels/deps /wheels/project/conductor_worker_operator-*.whl \
 && pip uninstall --yes pip setuptools wheel \
 && conductor-operator --help >/dev/null
WORKDIR /tmp
USER 10001:10001
# 8080: Prometheus metrics; 8081: kopf liveness endpoint (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["conductor-operator"]
