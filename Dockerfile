# syntax=docker/dockerfile:1
# The ONE code image recipe of every location: the teams' images differ only by the build args,
# which CI takes from deploy/locations.toml (name -> LOCATION, port -> PORT). Build with the
# REPOSITORY ROOT as context (it needs uv.lock, shared/ and, for transformation, dbt/):
#   docker build --build-arg LOCATION=ingestion --build-arg PORT=4000 \
#     -t ghcr.io/data-platform-org/data-platform-ingestion:<git-sha> .
# A location's own build step (its `prepare` in deploy/locations.toml) lives in its
# `prepared-<location>` stage below; everything else is shared, so no team's image can drift.
# tests/test_deploy_registry.py and tests/test_deploy_images.py check this file against the registry.

# No default: a build without LOCATION names no stage and fails.
ARG LOCATION

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---- build: this location's closure from uv.lock, into /app/.venv ----
FROM python:3.11-slim-bookworm AS build
ARG LOCATION
ARG PORT
RUN test -n "${LOCATION}" && test -n "${PORT}"
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Only the lock and the pyprojects of the members this image installs: with --frozen uv installs
# from the lock and never reads the other locations, so their code stays out of the image.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY locations/${LOCATION}/pyproject.toml locations/${LOCATION}/
# Third-party packages first, in their own layer: reused until uv.lock or a pyproject changes.
# `--package shared --extra k8s` adds what code images need on Kubernetes (dagster-postgres,
# dagster-k8s, dagster-aws for run logs, monitoring); --no-dev keeps test and lint tools out.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --package ${LOCATION} --frozen --no-dev --package shared --extra k8s --no-install-workspace
COPY shared/shared shared/shared
COPY locations/${LOCATION}/${LOCATION} locations/${LOCATION}/${LOCATION}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --package ${LOCATION} --frozen --no-dev --package shared --extra k8s
ENV PATH=/app/.venv/bin:$PATH

# ---- per-location build steps (BuildKit builds only the stage LOCATION names) ----
FROM build AS prepared-ingestion

FROM build AS prepared-analytics

FROM build AS prepared-transformation
# The dbt project, and its manifest prepared now (dbt parse): the location declares its assets
# from target/manifest.json at import, and the image must never parse (write access) at start-up.
COPY dbt dbt
ENV DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DO_NOT_TRACK=1
RUN python -m transformation.project prepare \
    && test -f dbt/target/manifest.json \
    && rm -rf dbt/logs

# The stage named by LOCATION (a stage of this file, not an image: nothing to tag).
# hadolint ignore=DL3006
FROM prepared-${LOCATION} AS prepared
ARG LOCATION
# Fail the build, not the rollout, when the definitions do not import (imports are cheap:
# no network, no settings read at load).
RUN /app/.venv/bin/python -c "import ${LOCATION}.definitions"

# ---- runtime: the virtualenv and the source trees, nothing else ----
FROM python:3.11-slim-bookworm AS runtime
ARG LOCATION
ARG PORT
# Fixed non-root uid/gid: deploy/helm values set runAsUser/runAsGroup/fsGroup 10001.
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/dagster_home \
    && chown 10001:10001 /opt/dagster/dagster_home
# HOME and DAGSTER_HOME are the only places written at run time; on Kubernetes the root
# filesystem is read-only and /tmp and DAGSTER_HOME are emptyDir volumes. dagster-dbt gives each
# dbt invocation its own folder under DBT_TARGET_PATH (absolute: /tmp), so the build's manifest
# in /app/dbt/target stays read-only. `dagster api grpc` reads its port, host and module from the
# DAGSTER_GRPC_* / DAGSTER_MODULE_NAME variables; the chart passes the same as arguments.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DO_NOT_TRACK=1 \
    DBT_TARGET_PATH=/tmp/dbt-target \
    DAGSTER_GRPC_HOST=0.0.0.0 \
    DAGSTER_GRPC_PORT=${PORT} \
    DAGSTER_MODULE_NAME=${LOCATION}.definitions
WORKDIR /app
# Everything the build produced under /app: the virtualenv, shared/, the location's package and,
# for transformation, dbt/ with its prepared manifest (plus the two small root files uv read).
COPY --from=prepared /app /app
USER 10001:10001
EXPOSE ${PORT}
# The dagster-user-deployments chart overrides this with the same command (dagsterApiGrpcArgs).
CMD ["dagster", "api", "grpc"]
