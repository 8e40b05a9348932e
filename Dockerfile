# syntax=docker/dockerfile:1
# One image for the four services; the command chooses which one runs:
#   docker run IMAGE                              -> the monitor (default command)
#   docker run IMAGE python -m services.script    -> the script service (likewise scene, cache)
# The health check speaks gRPC health (python -m shared.healthcheck), never a bare port check.
# The services bind 0.0.0.0 here, so each refuses to start without bearer tokens
# (DOPPEL_AUTH_TOKENS_FILE, role:name:token a line) or mutual TLS: nothing runs open by accident
# (DOPPEL_ALLOW_OPEN=true allows it on purpose). Tokens: `make secrets`, docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: the pinned dependencies and the package into a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the exact pins, so code changes reuse this layer.
COPY requirements.txt ./
RUN pip install --require-virtualenv -r requirements.txt
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
# pyproject.toml lists the CLI, benchmark and test-kit packages too (`doppel`, `doppel bench`,
# which starts its PostgreSQL with testkit); pip install . needs them. The image also gets `doppel`
# for operators (`doppel health` from inside a pod).
COPY bench ./bench
COPY testkit ./testkit
COPY doppel ./doppel
RUN pip install --require-virtualenv --no-deps . \
    && python -m compileall -q /opt/venv

# --- runtime: the virtual environment only, as an unprivileged user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid ${UID} doppel \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home --shell /usr/sbin/nologin doppel \
    && install -d -o ${UID} -g ${UID} -m 0700 /var/lib/doppelganger
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOPPEL_HOST=0.0.0.0 \
    DOPPEL_DATA_DIR=/var/lib/doppelganger
# The script service's library (SQLite, when DOPPEL_DATABASE_URL is unset) lives in a volume, so
# it outlives the container; under a read-only root filesystem mount one there, or use PostgreSQL.
VOLUME ["/var/lib/doppelganger"]
WORKDIR /tmp
USER 10001:10001
EXPOSE 50051 50052 50053 4317 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "shared.healthcheck"]
CMD ["python", "-m", "services.monitor"]
