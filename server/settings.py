"""The gateway's one typed settings tree.

Precedence, highest first: arguments given to the constructor, `RAGWAY_*` environment variables
(nesting with `__`, lists and dicts as JSON), the YAML file named by `RAGWAY_CONFIG_FILE` (the
Helm ConfigMap), then the defaults below.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from router.types import WorkerKind
from server.rag.filters import normalize_where

CONFIG_FILE_ENV = "RAGWAY_CONFIG_FILE"

PositiveSeconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerSettings(_Section):
    """One upstream worker: a vLLM server or ragway's embedding worker."""

    url: HttpUrl
    kind: WorkerKind = WorkerKind.CHAT
    # Models this worker serves. Empty means "ask the worker's /v1/models".
    models: tuple[str, ...] = ()
    name: str | None = None
    # Sent as `Authorization: Bearer ...` to this worker (vLLM's --api-key).
    api_key: SecretStr | None = None

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    @property
    def display_name(self) -> str:
        return self.name or self.base_url


class TimeoutSettings(_Section):
    """Upstream timeouts. `read` bounds the gap between two bytes, not the whole generation:
    a long generation keeps streaming and never trips it."""

    connect: PositiveSeconds = 5.0
    read: PositiveSeconds = 300.0
    write: PositiveSeconds = 30.0
    pool: PositiveSeconds = 10.0


class UpstreamSettings(_Section):
    max_connections: Annotated[int, Field(ge=1)] = 512
    # Must stay below the workers' own keep-alive timeout (uvicorn's default is 5 s), so that
    # ragway never writes a request onto a connection the worker is closing.
    keepalive_expiry: PositiveSeconds = 4.0


class HealthSettings(_Section):
    # Active probes of every worker's /health and /v1/models.
    interval: PositiveSeconds = 5.0
    # A worker that is down, or has never been up (a vLLM still loading), is probed this often
    # (when shorter than `interval`): it takes traffic within about this long of coming up.
    down_interval: PositiveSeconds = 1.0
    timeout: PositiveSeconds = 2.0
    # Probe timeouts in a row before an up worker is marked down: a busy worker may answer
    # late. A refused connection or an error status marks it down at once.
    unhealthy_threshold: Annotated[int, Field(ge=1)] = 3
    # Passive ejection after a failed request: out for eject_base * 2^(n-1) s, at most eject_max.
    eject_base: PositiveSeconds = 1.0
    eject_max: PositiveSeconds = 30.0
    # vLLM /metrics scrapes for load-aware routing; older data is not trusted.
    metrics_interval: PositiveSeconds = 1.0
    metrics_stale_after: PositiveSeconds = 5.0


class PolicyName(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LOAD = "least_load"
    SESSION = "session"
    PREFIX_AWARE = "prefix_aware"


class RoutingSettings(_Section):
    chat_policy: PolicyName = PolicyName.PREFIX_AWARE
    embedding_policy: PolicyName = PolicyName.LEAST_LOAD
    # Per served model, overriding the two defaults above.
    policies: dict[str, PolicyName] = Field(default_factory=dict)
    # Session affinity keys on this header, else on the request's `user` field.
    session_header: str = "x-session-id"
    session_load_factor: Annotated[float, Field(ge=1.0)] = 1.25
    # Prompt prefixes are hashed in blocks of this many characters (about 32 tokens).
    prefix_block_chars: Annotated[int, Field(ge=16)] = 128
    prefix_max_entries: Annotated[int, Field(ge=1)] = 100_000
    prefix_ttl: PositiveSeconds = 600.0
    # score = matched fraction - beta * (requests above the least loaded worker)
    prefix_beta: Annotated[float, Field(ge=0)] = 0.2


class KubernetesSettings(_Section):
    """Workers found through EndpointSlices: only Ready endpoints, watched for changes."""

    # None: the namespace the gateway's own pod runs in.
    namespace: str | None = None
    # Equality selectors ANDed with `kind_label` being present, e.g. the Helm release's
    # `app.kubernetes.io/instance`.
    label_selector: dict[str, str] = Field(default_factory=dict)
    # The EndpointSlice label (mirrored from the Service) saying `chat` or `embedding`.
    kind_label: str = "ragway.io/worker-kind"
    port_name: str = "http"
    # Seconds to wait before listing again after the watch fails.
    retry_interval: PositiveSeconds = 5.0


class DiscoverySettings(_Section):
    # `static`: only `workers`. `kubernetes`: `workers` plus what the cluster has.
    mode: Literal["static", "kubernetes"] = "static"
    kubernetes: KubernetesSettings = KubernetesSettings()


class RetrySettings(_Section):
    """Failover before the first byte reaches the client; never after it."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    # Total time spent on attempts before giving up.
    deadline: PositiveSeconds = 30.0
    # Wait before the second attempt; doubles for each one after.
    backoff: Annotated[float, Field(ge=0)] = 0.05


class StreamSettings(_Section):
    # Seconds between SSE keep-alive comments while a stream is quiet; 0 turns them off.
    ping_interval: Annotated[float, Field(ge=0)] = 15.0


class ShutdownSettings(_Section):
    """What SIGTERM does: see server/drain.py and the README's operations section."""

    # Seconds in-flight requests and streams get to finish after SIGTERM; streams still running
    # then end with an in-band error event. Keep it below the pod's grace period minus preStop.
    grace: Annotated[float, Field(ge=0)] = 25.0


class StateSettings(_Section):
    """State shared by gateway replicas. Unset `redis_url`: every replica keeps its own, in
    process (or in its data directory)."""

    # redis://[:password@]host:port/db or rediss://... ; a SecretStr: it may carry a password.
    redis_url: SecretStr | None = None
    # Every Redis call is bounded: a slow or unreachable Redis never stalls a request.
    timeout: PositiveSeconds = 0.5
    connect_timeout: PositiveSeconds = 1.0
    # Prefixes every key ragway writes, so one Redis can serve several deployments.
    key_prefix: str = "ragway:"
    max_connections: Annotated[int, Field(ge=1)] = 64


class LimitsSettings(_Section):
    """Caps on the work one request can make the gateway do, checked before doing it.
    Requests over a cap get a 400 or 413 that names it; connections over a cap are closed."""

    # JSON bodies. orjson itself refuses to write more than 254 levels, so keep well below.
    max_json_depth: Annotated[int, Field(ge=2, le=200)] = 64
    # Bodies at least this large are decoded in a worker thread, off the event loop.
    offload_parse_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024
    max_messages: Annotated[int, Field(ge=1)] = 2048
    # Items of an embeddings `input` or a completion `prompt` list (OpenAI allows 2048).
    max_inputs: Annotated[int, Field(ge=1)] = 2048
    # Token ids in one token-id input, and in all of a request's token-id inputs together.
    max_token_ids: Annotated[int, Field(ge=1)] = 131072
    # The HTTP server: seconds to receive a request's headers (408 and close after), their
    # largest size (431), the longest pause while reading a body (408), connections and
    # requests in flight before new requests get a 503, and idle keep-alive seconds.
    header_timeout: PositiveSeconds = 10.0
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    body_timeout: PositiveSeconds = 30.0
    max_connections: Annotated[int, Field(ge=1)] = 2048
    keep_alive: PositiveSeconds = 75.0
    # Under pressure (more than `pressure_pending` connections with an unfinished head or
    # body, or open connections at `pressure_connection_share` of `max_connections`), those
    # connections must make progress every `pressure_timeout` seconds and average
    # `pressure_min_rate` bytes/s, or get a 408 (server/slow_clients.py). A lone slow client
    # keeps the timeouts above.
    pressure_pending: Annotated[int, Field(ge=1)] = 64
    pressure_connection_share: Annotated[float, Field(gt=0, le=1)] = 0.9
    pressure_timeout: PositiveSeconds = 0.5
    pressure_min_rate: Annotated[int, Field(ge=0)] = 1024
    # Uploads are parsed in a pool of this many processes, each parse bounded in time and in
    # address space; a PDF stops at this many pages, an HTML file at this many tags.
    parse_workers: Annotated[int, Field(ge=1)] = 2
    parse_timeout: PositiveSeconds = 30.0
    parse_memory_bytes: Annotated[int, Field(ge=64 * 1024 * 1024)] = 2 * 1024 * 1024 * 1024
    max_pdf_pages: Annotated[int, Field(ge=1)] = 2000
    max_html_tags: Annotated[int, Field(ge=1)] = 200_000
    # Document metadata: UTF-8 bytes of one value, and of all keys and values of a document.
    max_metadata_value_bytes: Annotated[int, Field(ge=1)] = 4096
    max_metadata_bytes: Annotated[int, Field(ge=1)] = 16384
    # Metadata strings up to this many UTF-8 bytes (and every number and boolean) are copied into
    # each chunk, where `where` filters match them; longer ones are kept once per document (on
    # its first chunk) and shown with it, and a filter on such a value is a 400.
    chunk_metadata_value_bytes: Annotated[int, Field(ge=1)] = 256
    # A stream whose client reads nothing for this long is dropped, and its generation
    # cancelled; the upstream connection is released.
    stream_send_timeout: PositiveSeconds = 30.0
    # Connections for health probes and /metrics scrapes, apart from the request pool (so a
    # full pool never makes workers look down), and RAG /tokenize calls in flight at once.
    probe_connections: Annotated[int, Field(ge=1)] = 16
    tokenize_concurrency: Annotated[int, Field(ge=1)] = 16
    # `where` filters: values in one $in/$nin list, and clauses in the whole filter.
    max_filter_values: Annotated[int, Field(ge=1)] = 256
    max_filter_clauses: Annotated[int, Field(ge=1)] = 64


class ResponsesSettings(_Section):
    """The Responses API's stored responses: in Redis when `state.redis_url` is set (shared by
    replicas), else in a SQLite file under `rag.data_dir` (or `sqlite_path`)."""

    # Stored responses expire this long after they were created (OpenAI keeps them 30 days).
    ttl: PositiveSeconds = 30 * 24 * 3600.0
    # A response whose stored form (input items, output, response object) is larger is
    # answered but not stored; a request whose input alone is larger is refused.
    max_stored_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    # previous_response_id chains longer than this are refused.
    max_chain_depth: Annotated[int, Field(ge=1, le=10_000)] = 100
    # None: DATA_DIR/responses.sqlite3.
    sqlite_path: Path | None = None


FailMode = Literal["open", "closed"]


class AuthSettings(_Section):
    """API keys (see server/tenancy/keys.py). No `keys_file`: auth is off, and every request
    runs as one anonymous admin."""

    keys_file: Path | None = None
    # Seconds between checks of the key file for changes (a Kubernetes Secret update).
    reload_interval: PositiveSeconds = 2.0
    # When Redis fails for rate limits: `open` counts in this process, `closed` answers 503.
    limits_fail_mode: FailMode = "open"
    # A concurrency slot held in Redis expires after this long (a replica that died mid-request).
    slot_ttl: PositiveSeconds = 900.0
    # With auth on, /metrics needs an admin key unless this is true.
    public_metrics: bool = False


DEFAULT_RAG_TEMPLATE = (
    "Answer the user's question with the help of the numbered context passages below. If they "
    "do not contain the answer, say that you do not know.\n\nContext:\n{context}"
)


def _has_context_slot(template: str) -> str:
    if "{context}" not in template:
        raise ValueError("a RAG template must contain the {context} placeholder")
    return template


def _valid_filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return normalize_where(value)  # FilterError is a ValueError: pydantic reports it


ContextTemplate = Annotated[str, AfterValidator(_has_context_slot)]


class RetrievalOptions(_Section):
    """How much to retrieve and inject. Unset fields take the `rag` section's defaults."""

    top_k: Annotated[int, Field(ge=1, le=50)] | None = None
    # Cosine similarity in [-1, 1]; chunks scoring below it are not used.
    min_score: Annotated[float, Field(ge=-1, le=1)] | None = None
    filter: Annotated[dict[str, Any] | None, AfterValidator(_valid_filter)] = None
    # The retrieval query: the last user turn, plus up to two earlier user turns.
    query_turns: Annotated[int, Field(ge=1, le=3)] | None = None
    max_context_tokens: Annotated[int, Field(ge=1)] | None = None


class VirtualModel(RetrievalOptions):
    """A model name that means a base model with retrieval from one knowledge base."""

    model: str
    knowledge_base: str
    description: str = ""
    template: ContextTemplate | None = None


class RagSettings(_Section):
    """Knowledge bases and retrieval-augmented chat."""

    # Embedded Chroma persists under DATA_DIR/chroma, unless `chroma_url` names a Chroma server.
    data_dir: Path = Path("~/.cache/ragway")
    chroma_url: HttpUrl | None = None
    # Sent as `Authorization: Bearer ...` to a Chroma server that needs a token.
    chroma_token: SecretStr | None = None
    # Bounds every vector-store call (connecting included): a hung Chroma costs a 503 after this.
    store_timeout: PositiveSeconds = 10.0
    # For knowledge bases created without one; unset: the one model the embedding workers serve.
    default_embedding_model: str | None = None
    # Chunk size and overlap in tokens (tiktoken cl100k_base), defaults for new knowledge bases.
    chunk_tokens: Annotated[int, Field(ge=16, le=8192)] = 200
    chunk_overlap: Annotated[int, Field(ge=0)] = 40
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024
    # Largest document text, in UTF-8 bytes, after a file's text has been extracted.
    max_document_bytes: Annotated[int, Field(ge=1)] = 4 * 1024 * 1024
    template: ContextTemplate = DEFAULT_RAG_TEMPLATE
    top_k: Annotated[int, Field(ge=1, le=50)] = 4
    query_turns: Annotated[int, Field(ge=1, le=3)] = 1
    max_context_tokens: Annotated[int, Field(ge=1)] = 1536
    # Tokens kept free for the answer when a request sets no max_tokens.
    reserve_completion_tokens: Annotated[int, Field(ge=0)] = 256
    # Bounds retrieval as a whole: query embedding, vector search and token counting.
    retrieval_timeout: PositiveSeconds = 5.0
    # What chat does when retrieval fails, for knowledge bases created without a choice.
    fail_mode: FailMode = "open"
    virtual_models: dict[str, VirtualModel] = Field(default_factory=dict)

    @property
    def chroma_path(self) -> Path:
        return self.data_dir.expanduser() / "chroma"

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("rag.chunk_overlap must be smaller than rag.chunk_tokens")
        return self


class BandSettings(_Section):
    """One priority band of flow control's queue (per model)."""

    # Requests the band may hold queued; past it a request is refused with 429.
    cap: Annotated[int, Field(ge=1)] = 5000
    # Seconds a request may wait queued before it is refused with 429.
    ttl: PositiveSeconds = 60.0
    # Fraction of each worker's max_in_flight this band may fill: below 1 keeps room for
    # higher bands.
    share: Annotated[float, Field(gt=0, le=1)] = 1.0
    # With flow control on, a streamed chat or completion of this band asks vLLM for one chunk
    # per this many tokens (its `stream_interval`; the first and last are sent at once) unless
    # the client set its own. Fewer chunks cost vLLM's API server, ragway and the client less
    # CPU per token. None: every token.
    stream_interval: Annotated[int, Field(ge=1)] | None = None


class FlowModelSettings(_Section):
    """Per-model overrides of `flow`; unset fields take the global value."""

    max_in_flight: Annotated[int, Field(ge=0)] | None = None
    max_waiting: Annotated[float, Field(ge=0)] | None = None
    max_kv_cache_usage: Annotated[float, Field(ge=0, le=1)] | None = None
    engine_priority: bool | None = None
    high: BandSettings | None = None
    standard: BandSettings | None = None
    batch: BandSettings | None = None


class FlowSettings(_Section):
    """Flow control: queue requests in the gateway while every worker of their model is
    saturated; serve priority bands in order and tenants fairly (router/flow.py)."""

    enabled: bool = True
    # Per worker: ragway's own in-flight requests (0: no limit). Keep it at the engine's own
    # batch limit (vLLM's --max-num-seqs; `ragway up` and the chart start vLLM with 128), so
    # nothing queues inside the engine where flow control cannot order it.
    max_in_flight: Annotated[int, Field(ge=0)] = 128
    # Per worker: the engine's waiting queue, vllm:num_requests_waiting (0: not checked).
    max_waiting: Annotated[float, Field(ge=0)] = 4.0
    # Per worker: the engine's KV-cache use, 0-1 (0: not checked).
    max_kv_cache_usage: Annotated[float, Field(ge=0, le=1)] = 0.95
    # Per embedding worker: inputs waiting in its batch queue (0: not checked). The worker
    # itself refuses past its own max_queue (4096 by default) with 503.
    max_embedding_queue: Annotated[int, Field(ge=0)] = 1024
    # Set vLLM's `priority` from the band (workers run --scheduling-policy priority).
    engine_priority: bool = True
    # Deficit round-robin credit per turn, in estimated tokens.
    quantum: Annotated[int, Field(ge=1)] = 256
    # Requests queued per model in all bands together; past it a higher band's request
    # displaces the newest of a lower band (batch is shed first). 0: the sum of the caps.
    max_queued: Annotated[int, Field(ge=0)] = 8000
    high: BandSettings = BandSettings()
    standard: BandSettings = BandSettings()
    # Batch work fills 38 of a worker's 128: on a vLLM CPU worker the batch the engine decodes
    # sets both an interactive chat's time to first token beside it and the batch tenant's
    # tokens/s (benchmarks/README.md, "Flow control").
    batch: BandSettings = BandSettings(cap=1000, share=0.3, stream_interval=16)
    models: dict[str, FlowModelSettings] = Field(default_factory=dict)

    @field_validator("high", "standard", "batch", mode="before")
    @classmethod
    def _over_band_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        """A band given in part (`RAGWAY_FLOW__BATCH__SHARE=0.5`) keeps that band's own
        defaults for the rest (batch: cap 1000, stream_interval 16), not BandSettings'."""
        default = cls.model_fields[str(info.field_name)].default
        if isinstance(value, dict) and isinstance(default, BandSettings):
            return {**default.model_dump(), **value}
        return value


class RagwaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: str = "info"
    workers: tuple[WorkerSettings, ...] = ()
    # Public model name -> served model name, e.g. {"gpt-4o-mini": "smollm2-135m"}.
    aliases: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutSettings = TimeoutSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    health: HealthSettings = HealthSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    routing: RoutingSettings = RoutingSettings()
    retries: RetrySettings = RetrySettings()
    stream: StreamSettings = StreamSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    # Largest request body the gateway reads, in bytes.
    max_body_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    rag: RagSettings = RagSettings()
    state: StateSettings = StateSettings()
    limits: LimitsSettings = LimitsSettings()
    responses: ResponsesSettings = ResponsesSettings()
    auth: AuthSettings = AuthSettings()
    flow: FlowSettings = FlowSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug", "trace"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @model_validator(mode="after")
    def _aliases_do_not_chain(self) -> Self:
        chained = sorted(set(self.aliases) & set(self.aliases.values()))
        if chained:
            raise ValueError(f"aliases must point at served models, not other aliases: {chained}")
        return self

    @model_validator(mode="after")
    def _virtual_models_are_not_aliases(self) -> Self:
        clash = sorted(set(self.aliases) & set(self.rag.virtual_models))
        if clash:
            raise ValueError(f"names used both as an alias and as a virtual model: {clash}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Self:
        """Settings from the environment, over `config_file` (default: `$RAGWAY_CONFIG_FILE`)."""
        path = config_file if config_file is not None else os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return cls(**overrides)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ragway config file {str(path)!r} does not exist")
        with_file = type(
            cls.__name__,
            (cls,),
            {"model_config": SettingsConfigDict(**{**cls.model_config, "yaml_file": path})},
        )
        return with_file(**overrides)  # type: ignore[no-any-return]
