"""kvs_sentinel: CloudTrail detections for Kinesis Video Streams security best practices."""

# The one place the version is written: hatch reads it for the package metadata (pyproject.toml), so
# start-up needs no importlib.metadata (which pulls in email, csv, zipfile… for every command).
__version__ = "0.1.0"
