# One image for every validator (and for the one-shot genesis service in docker-compose.yml).
#   docker build -t settlement-ledger .     then     docker run --rm settlement-ledger --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project as pyproject.toml declares it (README.md is its long description).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY contracts contracts
COPY node node
RUN pip install . && rm -rf /src

# A non-root user. /net (the generated network) and /data (a node's store and WAL) are
# created here owned by it, so named volumes mounted there start out writable by it.
RUN useradd --create-home --uid 10001 ledger \
    && mkdir /net /data \
    && chown ledger:ledger /net /data
USER ledger
WORKDIR /home/ledger

ENTRYPOINT ["ledger"]
CMD ["--help"]
