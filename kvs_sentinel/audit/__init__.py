"""`kvs-sentinel audit`: the best practices checked against how the account is configured (who *can* read
video, who *has* a long-term key, what the trail *does not* record), reported as alerts with the same fields
as the detectors' and delivered through the same sinks.

collect.py reads the account (the only module that calls AWS); identities.py and monitoring.py judge what
it read (pure functions, the same IAM policy analysis as the detectors); report.py renders and decides the
exit code.
"""
