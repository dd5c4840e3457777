"""The composition root: configuration in, the parts of a run wired together. `replay`, `replay
--deliver`, `run`, the benchmarks and the example tests build their pipelines here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from kvs_sentinel.config import LoadedConfig
from kvs_sentinel.dedupe import AlertDeduper
from kvs_sentinel.engine import Engine, Processor
from kvs_sentinel.errors import ConfigError
from kvs_sentinel.flood import Suppressions
from kvs_sentinel.log_files import LogFileReader
from kvs_sentinel.pipeline import Pipeline
from kvs_sentinel.routing import Dispatcher, Router
from kvs_sentinel.shared_windows import SharedWindows
from kvs_sentinel.sinks.base import Sink, SinkContext
from kvs_sentinel.sinks.registry import build_sinks
from kvs_sentinel.sources.base import Source
from kvs_sentinel.state.base import SharedState, StateStore
from kvs_sentinel.state.memory import MemoryStore
from kvs_sentinel.stateful import StatefulJudge
from kvs_sentinel.stats import RunStats

if TYPE_CHECKING:
    from kvs_sentinel.metrics import Metrics  # prometheus_client: only `run` loads it

EventTimeObserver = Callable[[object], object]


def configured_dispatcher(
    loaded: LoadedConfig,
    command: str,
    sinks: Mapping[str, Sink] | None = None,
    wrap: Callable[[Sink], Sink] | None = None,
    shared_state: SharedState | None = None,
) -> Dispatcher:
    """The configured sinks (or `sinks` given in code: tests, benchmarks), routes, suppressions and
    grouping. Sinks given in code take every alert unless the configuration routes them. `shared_state`:
    a store every task shares, through which grouping windows and Slack's pace are kept across tasks."""
    delivery = loaded.delivery
    built = (
        sinks if sinks is not None else build_sinks(delivery.sinks, SinkContext(shared_state=shared_state))
    )
    if not built:
        raise ConfigError(f"{loaded.path}: {command} needs a sinks section (see config/sentinel.yaml)")
    default = delivery.default_route if delivery.sinks else tuple(built)
    return Dispatcher(
        {name: wrap(sink) if wrap else sink for name, sink in built.items()},
        Router(delivery.routes, default),
        suppressions=Suppressions(delivery.suppressions),
        grouping=delivery.grouping,
        shared_windows=(
            SharedWindows(shared_state, delivery.grouping.window_seconds)
            if shared_state is not None
            else None
        ),
    )


def processor_for(
    loaded: LoadedConfig,
    stats: RunStats,
    on_event_time: EventTimeObserver | None = None,
    judge: StatefulJudge | None = None,
) -> Processor:
    """`judge`: the stateful detectors' judge, whose cache the engine asks as it matches."""
    return Processor(Engine(loaded.detectors, judge.observer if judge else None), stats, on_event_time)


def stateful_judge(
    loaded: LoadedConfig, stats: RunStats, store: StateStore | None, *, learn: bool = False
) -> StatefulJudge | None:
    """The judge of the stateful detectors (None when none is loaded); a fresh memory store unless given."""
    if store is None and not any(detector.stateful is not None for detector in loaded.detectors):
        return None
    return StatefulJudge(store if store is not None else MemoryStore(), stats, learn=learn)


def replay_pipeline(
    loaded: LoadedConfig,
    source: Source,
    stats: RunStats,
    dispatcher: Dispatcher,
    *,
    state: StateStore | None = None,
    learn: bool = False,
) -> Pipeline:
    """`state`: what stateful detectors remember (default: a memory store forgotten at exit); `learn`:
    remember without alerting."""
    judge = stateful_judge(loaded, stats, state, learn=learn)
    # one worker keeps alerts in input order; a short queue keeps streamed chunks from piling up
    return Pipeline(
        source, processor_for(loaded, stats, judge=judge), dispatcher, workers=1, queue_size=2, judge=judge
    )


def run_pipeline(
    loaded: LoadedConfig,
    source: Source,
    stats: RunStats,
    dispatcher: Dispatcher,
    *,
    log_files: LogFileReader,
    dedupe: AlertDeduper,
    metrics: Metrics,
    on_event_time: EventTimeObserver,
) -> Pipeline:
    """`dedupe.store` (service.state) is also what stateful detectors remember."""
    workers = loaded.config.service.workers
    # a shared store holds both; one task's memory keeps them apart, so that at its bound the dedupe's
    # wall-clock keys and the detectors' event-time keys do not evict each other
    judge = stateful_judge(
        loaded, stats, MemoryStore() if isinstance(dedupe.store, MemoryStore) else dedupe.store
    )
    return Pipeline(
        source,
        processor_for(loaded, stats, on_event_time, judge),
        dispatcher,
        workers=workers,
        queue_size=workers,
        log_files=log_files,
        dedupe=dedupe,
        metrics=metrics,
        log_alerts=True,
        judge=judge,
    )
