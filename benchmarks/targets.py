"""The processes of an overhead run: the fake worker, and every gateway in front of it.

Each peer gateway is installed from PyPI into its own virtual environment under
`.bench-venvs/<name>` (once; a marker file records what was installed), so none of them shares
a package with ragway. All gateways point at the same fake worker. A peer that cannot be
installed or started is reported with the exact error, and the run goes on without it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.procs import Proc, start, wait_ready
from ragway.launch import gateway_spec, write_gateway_config
from ragway.stack import free_port

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".bench-venvs"


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    requirements: tuple[str, ...]
    executable: str
    language: str

    @property
    def requirement(self) -> str:
        return " ".join(self.requirements)


# Pinned so that a run can be repeated. litellm 1.109.1, the newest at the time of writing,
# cannot be installed: it requires litellm-proxy-extras==0.4.113, which is not on PyPI.
# opentelemetry-sdk: litellm's proxy imports litellm.integrations.otel on every authenticated
# request (user_api_key_auth._seed_request_destinations) and the [proxy] extra does not install
# the SDK it needs; the import then fails and is retried, re-reading the module, per request.
LITELLM = Peer("litellm", ("litellm[proxy]==1.106.2", "opentelemetry-sdk==1.45.2"), "litellm",
               "Python")  # fmt: skip
VLLM_ROUTER = Peer("vllm-router", ("vllm-router==0.1.17",), "vllm-router", "Rust")
LITELLM_KEY = "sk-ragway-bench-0123456789abcdef"
PEERS = {peer.name: peer for peer in (LITELLM, VLLM_ROUTER)}


class PeerError(RuntimeError):
    """A peer gateway cannot be installed or started; the message is the exact error."""


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise PeerError(
            f"{what} failed ({' '.join(argv)}):\n{(done.stderr or done.stdout)[-3000:]}"
        )


def install(peer: Peer, root: Path = VENVS) -> Path:
    """The peer's executable, installing it into root/<name> first unless already there."""
    venv = root / peer.name
    marker = venv / ".bench-installed"
    exe = venv / "bin" / peer.executable
    if marker.is_file() and marker.read_text() == peer.requirement and exe.exists():
        return exe
    uv = Path(sys.executable).parent / "uv"
    uv_cmd = str(uv) if uv.exists() else shutil.which("uv")
    python = str(venv / "bin" / "python")
    if uv_cmd:
        _run(
            [uv_cmd, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(venv)],
            "creating the venv",
        )
        _run(
            [uv_cmd, "pip", "install", "--quiet", "--python", python, *peer.requirements],
            f"installing {peer.requirement}",
        )
    else:
        _run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
        _run(
            [python, "-m", "pip", "install", "--quiet", *peer.requirements],
            f"installing {peer.requirement}",
        )
    if not exe.exists():
        raise PeerError(f"{peer.requirement} installed no {peer.executable!r} executable")
    marker.write_text(peer.requirement)
    return exe


def fake_worker(
    run_dir: Path, cpus: str | None, *, tokens: int, tokens_per_s: float, delay_ms: float
) -> Proc:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.fake_worker",
        "--port",
        str(port),
        "--tokens",
        str(tokens),
        "--tokens-per-s",
        str(tokens_per_s),
        "--delay-ms",
        str(delay_ms),
    ]
    proc = start("fake-worker", argv, log_dir=run_dir / "logs", cpus=cpus)
    proc.base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, f"http://127.0.0.1:{port}/health", 30)
    return proc


def source_tree(ref: str, root: Path = REPO / ".bench-src") -> Path:
    """ragway's code at git `ref`, exported once into root/<commit> (for a before/after run:
    the same venv, the older code first on PYTHONPATH)."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise PeerError(f"no commit {ref!r}: {done.stderr.strip()}")
    commit = done.stdout.strip()
    tree = root / commit
    if not (tree / "server" / "__main__.py").is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def from_tree(argv: list[str]) -> list[str]:
    """`python -m ...` run with a source tree on PYTHONPATH imports that tree's modules only
    with `-P`: otherwise `-m` puts the current directory (this checkout, where the benchmarks
    run) ahead of PYTHONPATH, and the "older" gateway is this one. (Every `ragway@REF` target
    of the overhead runs before 2026-11-30 14:45 UTC ran this checkout's code: see
    benchmarks/README.md.)"""
    assert argv[1] == "-m", argv
    return [argv[0], "-P", *argv[1:]]


def ragway(
    run_dir: Path,
    worker: str,
    cpus: str | None,
    kinds: tuple[str, ...] = ("chat", "embedding"),
    *,
    name: str = "ragway",
    source: Path | None = None,
    **settings: object,
) -> Proc:
    """`python -m server` with a YAML file listing the worker once per kind; with `source`, the
    code of that tree (see source_tree) instead of this checkout's."""
    port = free_port()
    root = worker.removesuffix("/v1")
    listed = [{"name": f"worker-{kind}", "url": root, "kind": kind} for kind in kinds]
    config = write_gateway_config(
        run_dir / f"{name}.yaml",
        {
            "host": "127.0.0.1",
            "port": port,
            "log_level": "warning",
            "workers": listed,
            **settings,
        },
    )
    argv, env, ready_url = gateway_command(config, port, source)
    proc = start(name, argv, log_dir=run_dir / "logs", cpus=cpus, env=env)
    proc.base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, ready_url, 60)
    return proc


def gateway_command(
    config: Path, port: int, source: Path | None
) -> tuple[list[str], dict[str, str], str]:
    """argv, extra environment and readiness URL of a gateway on `port`; with `source`, one
    that runs that tree's code (see from_tree)."""
    spec = gateway_spec(config, host="127.0.0.1", port=port)
    if source is None:
        return spec.argv, spec.env, spec.ready_url
    return from_tree(spec.argv), {**spec.env, "PYTHONPATH": str(source)}, spec.ready_url


def litellm(run_dir: Path, worker: str, cpus: str | None, models: tuple[str, ...]) -> Proc:
    exe = install(LITELLM)
    port = free_port()
    config = run_dir / "litellm.yaml"
    entries = [
        {
            "model_name": m,
            "litellm_params": {"model": f"openai/{m}", "api_base": worker, "api_key": "unused"},
        }
        for m in models
    ]
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": entries,
                "litellm_settings": {"drop_params": True},
                "general_settings": {"master_key": LITELLM_KEY},  # it refuses to start without one
            }
        )
    )
    argv = [
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    # Offline: LiteLLM otherwise fetches its model price map from GitHub at start.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proc = start("litellm", argv, log_dir=run_dir / "logs", cpus=cpus, env=env)
    proc.base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, f"http://127.0.0.1:{port}/health/liveliness", 180)
    return proc


def vllm_router(run_dir: Path, worker: str, cpus: str | None) -> Proc:
    exe = install(VLLM_ROUTER)
    port = free_port()
    argv = [
        str(exe),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--worker-urls",
        worker.removesuffix("/v1"),
        "--policy",
        "round_robin",
        "--log-level",
        "warning",
        "--prometheus-port",
        str(free_port()),
    ]
    proc = start("vllm-router", argv, log_dir=run_dir / "logs", cpus=cpus)
    proc.base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, f"http://127.0.0.1:{port}/health", 120)
    return proc
