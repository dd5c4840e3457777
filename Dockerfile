# kvs-sentinel: the SQS consumer for ECS (`kvs-sentinel run`).
#   docker build -t kvs-sentinel .
#   docker run --rm -v "$PWD/my.yaml:/etc/kvs-sentinel/sentinel.yaml:ro" -e KVS_SENTINEL_QUEUE_URL=... kvs-sentinel
# The configuration is the file $KVS_SENTINEL_CONFIG names (default /etc/kvs-sentinel/sentinel.yaml, the
# shipped example): mount yours there, COPY it there in a derived image, or point the variable elsewhere.
# The root filesystem may be read-only (ECS readonlyRootFilesystem): the bytecode is compiled here, at
# build time, and the sentinel writes nothing outside /tmp. tests/container/ builds and runs this image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Each instruction costs a full copy of the root filesystem on the vfs storage driver CI uses (about 15 s
# each), so related steps share one instruction.

# --- build: exactly the locked dependency set (hashes checked), then the wheel, into a self-contained venv
FROM ${PYTHON_IMAGE} AS build
# dependencies first: a change to the code alone reuses this layer
COPY pyproject.toml uv.lock /src/
RUN export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 UV_NO_CACHE=1 \
 && python -m venv /opt/uv \
 && /opt/uv/bin/pip install --quiet uv==0.13.8 \
 && /opt/uv/bin/uv export --project /src --frozen --no-emit-project --no-dev --format requirements-txt \
      -o /src/requirements.txt \
 && python -m venv /opt/kvs-sentinel \
 && /opt/kvs-sentinel/bin/pip install --quiet --no-compile --require-hashes -r /src/requirements.txt
# .dockerignore lets in only README.md, LICENSE, kvs_sentinel/ and config/ besides the two above
COPY . /src/
# unchecked-hash bytecode: valid whatever the files' timestamps, and never rewritten at run time
RUN export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 UV_NO_CACHE=1 \
 && /opt/uv/bin/uv build --quiet --wheel -o /src/dist /src \
 && /opt/kvs-sentinel/bin/pip install --quiet --no-compile --no-deps /src/dist/*.whl \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/kvs-sentinel \
 && /opt/kvs-sentinel/bin/kvs-sentinel --version \
 && mkdir -p /out/opt /out/etc/kvs-sentinel \
 && cp -a /opt/kvs-sentinel /out/opt/ \
 && cp -r /src/config/. /out/etc/kvs-sentinel/

# --- runtime: no compilers, no uv, no pip cache, no sources; a non-root user
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 sentinel \
 && useradd --system --uid 10001 --gid sentinel --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sentinel
COPY --from=build /out/ /
LABEL org.opencontainers.image.title="kvs-sentinel" \
      org.opencontainers.image.description="CloudTrail watcher for Kinesis Video Streams security best practices" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/kvs-sentinel/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KVS_SENTINEL_CONFIG=/etc/kvs-sentinel/sentinel.yaml
USER 10001:10001
# no curl in the image: the CLI checks /healthz on port 8080 itself (ECS uses the task definition's check)
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["kvs-sentinel", "health"]
# PID 1 handles SIGTERM (Docker's default stop signal) itself: stop receiving, drain within
# grace_seconds, exit 0
CMD ["kvs-sentinel", "run"]
