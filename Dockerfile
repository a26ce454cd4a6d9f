# kycflow image for compose.yaml: `kycflow serve`, `kycflow worker`, `kycflow project`.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the project; pyproject.toml declares every runtime dependency. Copy only what the
# build needs (pyproject's [tool.setuptools.packages.find] list + the readme it names).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY statemachines ./statemachines
COPY ingest ./ingest
COPY projections ./projections
COPY streams ./streams
RUN pip install . \
    && cd / && rm -rf /src

# Non-root. /data is the working directory; compose mounts the kycflow-data volume there
# (a fresh named volume inherits this ownership). Not declared VOLUME, so scaled workers,
# which need no disk, leave no anonymous volumes behind.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin kycflow \
    && mkdir -p /data \
    && chown kycflow:kycflow /data
USER kycflow
WORKDIR /data

EXPOSE 8080
CMD ["kycflow", "serve"]
