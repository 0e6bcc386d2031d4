# syntax=docker/dockerfile:1
# One image for every hdhub service: the command picks the service
#   docker run IMAGE run registrations --host 0.0.0.0 --port 8000
#   docker run IMAGE worker uploads
#   docker run IMAGE migrate registrations
# Runs as uid 10001 on a read-only root filesystem: the only writable place it needs is /tmp
# (mount an emptyDir there). Checked statically by tests/deploy/test_dockerfile.py.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir 'uv>=0.5,<1'
WORKDIR /src
# The whole workspace (.dockerignore keeps tests, docs and local state out), installed from the
# lock as wheels, not editable, so /src is not needed at run time. Listing each member's
# pyproject for a dependencies-only layer would break the build whenever a service is added;
# the uv cache mount keeps rebuilds fast instead.
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
# The source revision built (`docker build --build-arg HDHUB_REVISION=$(git rev-parse HEAD)`):
# a label of hdhub_build_info.
ARG HDHUB_REVISION=unknown
RUN groupadd --system --gid 10001 hdhub \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hdhub
COPY --from=build --chown=0:0 /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HDHUB_DATA_DIR=/tmp/hdhub \
    HDHUB_SECRETS_DIR=/run/secrets/hdhub \
    HDHUB_LOG_FORMAT=json \
    HDHUB_REVISION=${HDHUB_REVISION}
WORKDIR /app
USER 10001:10001
VOLUME ["/tmp"]
EXPOSE 8000 50051
ENTRYPOINT ["hdhub"]
CMD ["run", "all", "--host", "0.0.0.0", "--port", "8000"]
