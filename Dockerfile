# kvs-sentinel: the SQS consumer for ECS (`kvs-sentinel run`).
#   docker build -t kvs-sentinel .
#   docker run --rm -v "$PWD/my.yaml:/etc/kvs-sentinel/sentinel.yaml:ro" -e KVS_SENTINEL_QUEUE_URL=... kvs-sentinel
# The configuration is the file $KVS_SENTINEL_CONFIG names (default /etc/kvs-sentinel/sentinel.yaml, the
# shipped example): mount yours there, COPY it there in a derived image, or point the variable elsewhere.
# .ci/run proves this install path without a Docker engine: the same wheel, the same `pip install` into a
# fresh venv, then `kvs-sentinel --version` and a replay of examples/.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel (and any dependency without a wheel for this platform) into a self-contained venv
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kvs_sentinel/ kvs_sentinel/
COPY config/ config/
RUN python -m venv /opt/kvs-sentinel \
 && python -m pip wheel --no-deps -w /src/dist . \
 && /opt/kvs-sentinel/bin/pip install /src/dist/*.whl \
 && /opt/kvs-sentinel/bin/kvs-sentinel --version \
 && mkdir -p /etc/kvs-sentinel \
 && cp -r /src/config/. /etc/kvs-sentinel/

# --- runtime: no compilers, no pip cache, no sources; a non-root user
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kvs-sentinel" \
      org.opencontainers.image.description="CloudTrail watcher for Kinesis Video Streams security best practices" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 sentinel \
 && useradd --system --uid 10001 --gid sentinel --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sentinel
COPY --from=build /opt/kvs-sentinel /opt/kvs-sentinel
COPY --from=build /etc/kvs-sentinel /etc/kvs-sentinel
ENV PATH=/opt/kvs-sentinel/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KVS_SENTINEL_CONFIG=/etc/kvs-sentinel/sentinel.yaml
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# no curl in the image: the CLI checks /healthz itself (ECS uses the task definition's check instead)
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["kvs-sentinel", "health"]
# PID 1 handles SIGTERM itself: stop receiving, drain within grace_seconds, exit 0
STOPSIGNAL SIGTERM
CMD ["kvs-sentinel", "run"]
