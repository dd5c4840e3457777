"""Alert dedupe: a redelivered event alerts once per detector within the window, in bounded memory."""

from __future__ import annotations

import pytest

from kvs_sentinel.dedupe import AlertDeduper


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seen(dedupe: AlertDeduper, detector: str, event_id: str | None) -> bool:
    """The pipeline's use: a duplicate is skipped; anything else is delivered, then recorded."""
    if dedupe.is_duplicate(detector, event_id):
        return True
    dedupe.record(detector, event_id)
    return False


def test_a_redelivered_event_is_seen_once_per_detector() -> None:
    dedupe = AlertDeduper(window_seconds=60, max_entries=10, clock=Clock())
    assert seen(dedupe, "kvs-producer-media-read", "e1") is False
    assert seen(dedupe, "kvs-producer-media-read", "e1") is True
    assert seen(dedupe, "kvs-untrusted-source-ip", "e1") is False  # another detector, another alert
    assert seen(dedupe, "kvs-producer-media-read", "e2") is False


def test_the_window_ends_and_the_pair_alerts_again() -> None:
    clock = Clock()
    dedupe = AlertDeduper(window_seconds=60, max_entries=10, clock=clock)
    seen(dedupe, "d", "e1")
    clock.now += 59.9
    assert seen(dedupe, "d", "e1") is True  # a repeat does not extend the window
    clock.now += 0.1
    assert seen(dedupe, "d", "e1") is False
    assert len(dedupe) == 1


def test_events_without_an_event_id_never_dedupe() -> None:
    dedupe = AlertDeduper(window_seconds=60, max_entries=10, clock=Clock())
    for event_id in (None, "", None):
        assert seen(dedupe, "d", event_id) is False
    assert len(dedupe) == 0


def test_memory_is_bounded_and_the_oldest_goes_first() -> None:
    clock = Clock()
    dedupe = AlertDeduper(window_seconds=3600, max_entries=3, clock=clock)
    for n in range(5):
        clock.now += 1
        seen(dedupe, "d", f"e{n}")
    assert len(dedupe) == 3
    assert dedupe.is_duplicate("d", "e4")
    assert dedupe.is_duplicate("d", "e2")
    assert not dedupe.is_duplicate("d", "e1")  # evicted: a redelivery of it would alert again


def test_check_then_record_after_delivery() -> None:
    dedupe = AlertDeduper(window_seconds=60, max_entries=10, clock=Clock())
    assert not dedupe.is_duplicate("d", "e1")  # delivery failed: nothing recorded, the retry alerts
    assert not dedupe.is_duplicate("d", "e1")
    dedupe.record("d", "e1")
    assert dedupe.is_duplicate("d", "e1")


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        AlertDeduper(window_seconds=0)
    with pytest.raises(ValueError, match="max_entries"):
        AlertDeduper(max_entries=0)
