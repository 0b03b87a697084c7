# syntax=docker/dockerfile:1.7
# ragway embedding worker: `python -m workers.embedding` on port 8002, CPU torch.
#
#   # weights baked in (the chart's default, embedding.model.source=image):
#   docker build -f deploy/docker/embedding.Dockerfile \
#       --build-arg EMBED_MODEL=BAAI/bge-small-en-v1.5 \
#       -t ghcr.io/ragway/embedding:0.1.0-bge-small-en-v1.5 .
#   # no weights (embedding.model.source=pvc):
#   docker build -f deploy/docker/embedding.Dockerfile --target runtime \
#       -t ghcr.io/ragway/embedding:0.1.0 .
#
# Stages: `build` installs the locked dependencies (requirements/embedding.txt, torch-cpu.txt:
# ragway's, sentence-transformers, onnx for the worker's one-time ONNX export, and CPU-only torch) and ragway into a virtualenv;
# `model` downloads one Hugging Face snapshot; `runtime` is the slim base, the virtualenv and an
# unprivileged user; `with-model` (the default target) adds the weights at /models/<name>.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Everything from the hashed locks (scripts/lock.sh). torch from PyTorch's CPU index alone
# (PyPI's default wheel pulls in GBs of CUDA libraries); the rest from PyPI alone.
COPY requirements/torch-cpu.txt requirements/embedding.txt ./requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps \
        --index-url https://download.pytorch.org/whl/cpu -r requirements/torch-cpu.txt \
    && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/embedding.txt
COPY pyproject.toml README.md ./
COPY server ./server
COPY router ./router
COPY workers ./workers
COPY ragway ./ragway
RUN /opt/venv/bin/pip install --no-deps --no-compile /src


FROM build AS model
ARG EMBED_MODEL=BAAI/bge-small-en-v1.5
# A commit SHA makes the baked weights reproducible; `main` follows the repository.
ARG EMBED_MODEL_REVISION=main
RUN /opt/venv/bin/python -c "import os, sys; \
from huggingface_hub import snapshot_download; \
repo, rev = sys.argv[1], sys.argv[2]; \
snapshot_download(repo, revision=rev, local_dir='/models/' + repo.split('/')[-1], \
                  ignore_patterns=['*.onnx', 'onnx/*', '*.h5', '*.msgpack', '*.ot', 'openvino/*'])" \
    "${EMBED_MODEL}" "${EMBED_MODEL_REVISION}"


FROM python:3.11.14-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="ragway-embedding" \
      org.opencontainers.image.description="ragway's OpenAI-compatible embedding worker (CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ragway \
    && useradd --system --uid 10001 --gid ragway --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ragway
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp
WORKDIR /app
USER 10001:10001
EXPOSE 8002
CMD ["python", "-m", "workers.embedding", "--host", "0.0.0.0", "--port", "8002"]


FROM runtime AS with-model
COPY --from=model --chown=10001:10001 /models /models
