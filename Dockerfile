# syntax=docker/dockerfile:1
# trading-mcp image. Stages:
#   builder  builds the project wheel and installs it (with its dependencies) into /opt/venv
#   test     builder + the dev extras, promtool and the sources: runs the test suite (docker-compose.test.yml)
#   runtime  (default) python:3.11-slim with /opt/venv only: no compilers, no pip cache, non-root user
# One image runs every service; the command picks it: `gateway`, `execsim`, `serve ...` (see docker-compose.yml).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# The wheel with no extras, dependencies from the index: what tests/test_wheel_install.py installs and runs.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/trading_mcp-*.whl

FROM builder AS test
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus make \
 && rm -rf /var/lib/apt/lists/*
RUN /opt/venv/bin/pip install -e '.[dev]'
ENV PATH=/opt/venv/bin:$PATH
CMD ["python", "-m", "pytest"]

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRADING_MCP_DATA_DIR=/data \
    TRADING_MCP_HEALTH_URL=http://127.0.0.1:8001/healthz
RUN groupadd --system --gid 10001 trading \
 && useradd --system --uid 10001 --gid trading --home-dir /data --no-create-home --shell /usr/sbin/nologin trading \
 && mkdir -p /data \
 && chown trading:trading /data
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8001 8002 8004
# Each service sets TRADING_MCP_HEALTH_URL to its own port (docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['TRADING_MCP_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["trading-mcp"]
CMD ["gateway", "--host", "0.0.0.0"]
