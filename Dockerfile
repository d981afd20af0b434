# stadspas-adapter API image. The scheduler runs from the same image as a second,
# single container: `docker run --no-healthcheck ... IMAGE stadspas-adapter scheduler`
# (compose: `healthcheck: {disable: true}`). It serves no HTTP, so the image's HEALTHCHECK
# below would call it unhealthy, and Swarm replaces an unhealthy task: in the middle of a sync.
#
# Production mode: the container refuses to start without ADAPTER_ENCRYPTION_KEYS and
# ADAPTER_BLIND_INDEX_KEY from your secret store, and takes ADAPTER_DATABASE_URL for
# PostgreSQL. Without ADAPTER_WEB_SECRET_KEY it starts with the API alone: the counter
# page and the dashboard stay off (a warning in the log says so) until it is set.
#
# The image holds no configuration: mount yours at /app/config (adapter.yaml and budgets.yaml;
# config/adapter.yaml in the repository is the commented example), e.g.
#   docker run -v /srv/stadspas-adapter/config:/app/config:ro -e ADAPTER_ENCRYPTION_KEYS -e ... IMAGE
# Without it the container stops and names the file it needs: it never runs in production on the
# example's demo source and example bank account. The shipped mappings are at /app/mappings
# (`mapping: ../mappings/...` from there); data_dir `../var` is /app/var, the one folder the image's
# user may write (mount a volume there if you use SQLite).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ADAPTER_CONFIG=/app/config/adapter.yaml \
    ADAPTER_ENVIRONMENT=production

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app adapter

# Install the project itself (not just a copy) so the entry points exist.
COPY pyproject.toml README.md ./
COPY adapter ./adapter
COPY connectors ./connectors
RUN pip install --no-cache-dir .
COPY mappings ./mappings
RUN mkdir -p /app/config /app/var && chown adapter /app/var

USER adapter
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v1/health', timeout=2).status == 200 else 1)"
# Our own command, not bare gunicorn: it checks the configuration and keys once before forking, and runs
# gunicorn with the service's logger, so gunicorn's own lines are JSON and redacted like every other line.
CMD ["stadspas-adapter", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
