# syntax=docker/dockerfile:1.7
# ragway gateway: `python -m server` on port 8000.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t ghcr.io/ragway/gateway:0.1.0 .
#
# Two stages: the build stage installs ragway and its base dependencies (no `local` or `dev`
# extras) into a virtualenv; the final stage copies only that virtualenv onto the same slim base
# and runs as an unprivileged user. Pin the base by digest in your registry mirror for
# byte-for-byte reproducible builds (`python:3.11.14-slim-bookworm@sha256:...`).

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies from the hashed lock (scripts/lock.sh), then ragway itself without resolving.
COPY requirements/gateway.txt ./requirements/
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/gateway.txt
COPY pyproject.toml README.md ./
COPY server ./server
COPY router ./router
COPY workers ./workers
COPY ragway ./ragway
RUN /opt/venv/bin/pip install --no-deps --no-compile /src


FROM python:3.11.14-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="ragway-gateway" \
      org.opencontainers.image.description="OpenAI-compatible LLM gateway in front of vLLM workers" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ragway \
    && useradd --system --uid 10001 --gid ragway --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ragway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAGWAY_HOST=0.0.0.0 \
    RAGWAY_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Kubernetes probes /healthz and /readyz (see the Helm chart), so no HEALTHCHECK here.
CMD ["python", "-m", "server"]
