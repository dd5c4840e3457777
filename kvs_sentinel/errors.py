"""Typed errors. Catch broadly only at the boundary of one message or one file."""


class SentinelError(Exception):
    """Base of every error kvs_sentinel raises on purpose."""


class ConfigError(SentinelError):
    """The configuration or a detector pack is invalid. The message names the file and the field path."""


class UsageError(SentinelError):
    """A command-line argument cannot be used (an output path that cannot be written). Names the option."""


class InputError(SentinelError):
    """An input (file, message, record) could not be read. The message names where it is."""


class DeliveryError(SentinelError):
    """An alert could not be delivered to a sink."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
