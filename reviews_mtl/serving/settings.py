"""The predict endpoint's settings and bounds (env ``REVIEWS_SERVE_*``; the flags of ``serve-model`` win)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reviews_mtl.settings import RuntimeKind


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVIEWS_SERVE_", frozen=True, extra="ignore", case_sensitive=False)

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    runtime: RuntimeKind = "auto"
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = one per core")
    # One model call takes the requests that arrived within max_wait_ms of the first, up to max_batch reviews:
    # 5 ms is small next to a model call (tens of ms on a CPU) and lets concurrent callers share it.
    max_batch: int = Field(default=64, ge=1)
    max_wait_ms: float = Field(default=5.0, ge=0)
    max_items: int = Field(default=64, ge=1, description="reviews in one request (413 past it)")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="request body bytes (413 past it)")
    # Reviews waiting for the model before new requests get 429: at ~200 reviews/s on 2 cores, 1,024 is
    # about 5 s of work, so a request that is admitted is answered well within timeout_s.
    max_queued: int = Field(default=1024, ge=1)
    max_connections: int = Field(default=256, ge=1, description="open connections before uvicorn answers 503")
    timeout_s: float = Field(default=10.0, gt=0, description="wait for the model before a 503")
