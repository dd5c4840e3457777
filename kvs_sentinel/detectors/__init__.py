"""Detectors: the YAML language, its compiler, operators, checks and the index."""

from kvs_sentinel.detectors import iam_checks as _iam_checks  # noqa: F401  (registers the IAM checks)
