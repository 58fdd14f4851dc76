# syntax=docker/dockerfile:1
#
# Juhe image: one image for every role. The console script `juhe` is the entrypoint, so the
# role is the command: `gateway` (default), `worker <pool>`, `simulator`, `migrate`, `up`, …
#
#   docker build -t juhe .
#   docker run --rm -p 8080:8080 -e JUHE_GATEWAY__HOST=0.0.0.0 juhe            # gateway
#   docker run --rm juhe worker ledger                                          # a worker pool
#
# The node's profile is production: it refuses to start with the secrets published in
# config/default.toml, so give it your own (README, "Secrets and profiles"; docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# builder: compile/install everything into a self-contained virtualenv at /opt/venv
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Compilers only for dependencies without a wheel on this platform; they stay in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
    && pip install --upgrade pip setuptools wheel

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so source edits don't reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (a regular, non-editable install into the venv), and a smoke test that
# the installed package imports from outside the source tree.
COPY . .
RUN pip install --no-deps . \
    && cd / && python -c "import cli.main"

# ---------------------------------------------------------------------------------------------
# runtime: slim Python, the venv and the SQL files; no compilers, no source tree
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="juhe" \
      org.opencontainers.image.description="Juhe (聚合): an aggregated payment gateway"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The font PDF statements and reports embed (settlement.pdf_font): Traditional Chinese glyphs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-arphic-bsmi00lp \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 juhe \
    && useradd --system --uid 10001 --gid juhe --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin juhe

COPY --from=builder /opt/venv /opt/venv
# Migrations and queries are read at runtime from sql/ (relative to the working directory).
COPY --from=builder /app/sql /app/sql
# Also reachable next to the installed packages, for code that locates sql/ from __file__.
RUN ln -s /app/sql "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sql"

WORKDIR /app
USER 10001:10001

# gateway; the simulator listens on 8090 and worker metrics from 9100 up
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('JUHE_GATEWAY__PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["juhe"]
CMD ["gateway"]
