# lightcol serve: late-interaction embeddings, reranking and search over HTTP, on CPU.
#
#   docker build -t lightcol-serve .                                  # bakes in the default model
#   docker build --build-arg MODEL=colbert-ir/colbertv2.0 -t lightcol-serve .
#   docker build --build-arg MODEL= -t lightcol-serve .               # no model: mount one at /models/model
#
#   python -c 'import secrets; print(secrets.token_urlsafe(32))' > api-key && chmod 644 api-key
#   docker run --rm -p 8080:8080 --cpus 2 -v "$PWD/api-key:/run/secrets/lightcol_api_key:ro" \
#       lightcol-serve --api-key-file /run/secrets/lightcol_api_key --threads 2
#
# Arguments after the image name are added to `lightcol serve` (see `lightcol serve --help`); without
# any, the key file above is required. The model loads from /models/model and never from the network.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/lightcol
COPY pyproject.toml README.md models.json ./
COPY lightcol ./lightcol
RUN pip install ".[serve]"

# Build time: fetch the model (the only step that needs the network) into a self-contained folder.
ARG MODEL=answerdotai/answerai-colbert-small-v1
RUN if [ -n "$MODEL" ]; then \
        lightcol download "$MODEL" --to /models/model --cache-dir /tmp/lightcol-cache && rm -rf /tmp/lightcol-cache; \
    else mkdir -p /models/model; fi

# Run time: offline, unprivileged; derived files (ONNX Runtime's optimised-graph cache) go to /tmp.
ENV HF_HUB_OFFLINE=1 \
    LIGHTCOL_CACHE_PATH=/tmp/lightcol-cache
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lightcol
USER 10001

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=2)"]
# SIGTERM (docker stop): no new connections, requests in flight finish (up to --graceful-timeout), then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lightcol", "serve", "--model-path", "/models/model", "--host", "0.0.0.0", "--port", "8080", "--graceful-timeout", "8"]
CMD ["--api-key-file", "/run/secrets/lightcol_api_key"]
