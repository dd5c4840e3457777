"""kvs_sentinel: CloudTrail detections for Kinesis Video Streams security best practices."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kvs-sentinel")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
