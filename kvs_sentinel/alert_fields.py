"""The names of the fields an alert takes from its event: what summary templates, grouping keys and
suppressions may name. One list, so a field added here is usable everywhere."""

from __future__ import annotations

from typing import Literal, get_args

EventField = Literal[
    "event_id",
    "event_time",
    "event_source",
    "event_name",
    "principal",
    "principal_type",
    "source_ip",
    "user_agent",
    "access_key_id",
    "account",
    "region",
    "resource",
    "error_code",
    "error_message",
]
EVENT_FIELDS: tuple[EventField, ...] = get_args(EventField)

# The alert's own fields beside those: what grouping keys and suppressions may also name.
AlertField = Literal[EventField, "severity"]
MatchField = Literal[AlertField, "detector", "practice"]
