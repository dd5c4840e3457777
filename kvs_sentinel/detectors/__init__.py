"""Detectors: the YAML language, its compiler, operators, checks and the index."""

from kvs_sentinel.detectors import arn_checks as _arn_checks  # noqa: F401  (registers the ARN checks)
from kvs_sentinel.detectors import iam_checks as _iam_checks  # noqa: F401  (registers the IAM checks)
from kvs_sentinel.detectors import text_operators as _text_operators  # noqa: F401  (registers text_*)
