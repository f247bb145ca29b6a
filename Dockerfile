# syntax=docker/dockerfile:1
# Mission Control: the dashboard (gunicorn, wsgi:server) and, with another command, the
# pipeline jobs (`mission-control process|rollup|reconcile|...`) in one image.
#   docker build -t mission-control .
#   docker run --rm -p 127.0.0.1:8050:8050 --env-file prod.env mission-control
#   docker run --rm --env-file prod.env mission-control mission-control process
# APP_ENV=production is the default here: the app refuses to start without SECRET_KEY,
# an explicit AUTH_MODE (oidc or alb) and the AWS backend settings.

# Same base in both stages: the venv's interpreter symlink must resolve in the final image.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a virtualenv holding exactly the locked dependencies --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.lock /tmp/requirements.lock
# Hashes make pip refuse anything but the locked files; wheels only, so no compiler is needed.
RUN pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/requirements.lock
# The `mission-control` command (pyproject's [project.scripts]) for the scheduled jobs; the
# code itself runs from /app, beside assets/ and gunicorn.conf.py.
RUN printf '%s\n' '#!/opt/venv/bin/python' 'import sys' 'from pipeline.cli import main' \
        'sys.exit(main())' > /opt/venv/bin/mission-control \
    && chmod 0755 /opt/venv/bin/mission-control

# --- runtime: interpreter, venv, application code; no compilers, no tests -----------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mission-control" \
      org.opencontainers.image.description="Operator dashboard and data pipeline"
# A fixed numeric id, so ECS and Kubernetes can verify the image never runs as root.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code is owned by root and only readable by the app user: a compromised worker cannot rewrite it.
COPY wsgi.py gunicorn.conf.py ./
COPY assets/ assets/
COPY auth/ auth/
COPY configuration/ configuration/
COPY dashboard/ dashboard/
COPY data_access/ data_access/
COPY live/ live/
COPY pipeline/ pipeline/
RUN python -m compileall -q /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    BIND=0.0.0.0:8050 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    APP_ENV=production
USER 10001:10001
EXPOSE 8050
# Liveness only (/healthz): a store outage must not get every task replaced; /readyz says why.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8050/healthz', timeout=2)"]
CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:server"]
