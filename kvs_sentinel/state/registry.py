"""Backends by URL scheme: `memory`, `sqlite:PATH`, `dynamodb:TABLE`. A new backend is one module with
an opener registered by `@backend(scheme, example)` (openers.py holds the shipped ones)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kvs_sentinel.state.base import StateStore


@dataclass(frozen=True)
class StoreUse:
    """What the caller allows the store beyond its URL. `group_commits`: a backend may commit several
    batches together. `run` never allows it: a batch judges a message that is acknowledged next, so it
    is committed when it ends. A replay of files into JSON Lines allows it: it acknowledges nothing and
    nothing makes it pause (a pipe may, and so may sinks pacing their deliveries, while an open
    transaction would hold the file's write lock)."""

    group_commits: bool = False


Opener = Callable[[str, StoreUse], Awaitable[StateStore]]
# scheme → (opener of the rest of the URL, an example URL: with a `:` when the rest is required)
BACKENDS: dict[str, tuple[Opener, str]] = {}


def backend(scheme: str, example: str) -> Callable[[Opener], Opener]:
    def register(opener: Opener) -> Opener:
        BACKENDS[scheme] = (opener, example)
        return opener

    return register


def check_state_url(url: str) -> None:
    """ValueError unless `url` names a known backend and what it needs (nothing is opened)."""
    from kvs_sentinel.state import openers  # noqa: F401  (registers the shipped backends)

    scheme, _, rest = url.partition(":")
    if scheme not in BACKENDS:
        raise ValueError(f"state {url!r}: unknown backend {scheme!r}; known: {', '.join(sorted(BACKENDS))}")
    example = BACKENDS[scheme][1]
    if (":" in example) != bool(rest):
        raise ValueError(f"state {url!r}: write {example}")


async def open_store(url: str, use: StoreUse = StoreUse()) -> StateStore:
    """The store a URL names; ValueError says what is wrong with the URL."""
    check_state_url(url)
    scheme, _, rest = url.partition(":")
    return await BACKENDS[scheme][0](rest, use)
