# One image for every Jisr container; the command picks the part:
#   jisr serve referral|imaging|teleconsult, jisr migrate, celery -A shared.tasks worker|beat.
# Dependencies come from requirements.lock with their hashes, as `make` installs them.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/jisr
COPY requirements.lock /tmp/requirements.lock
RUN /opt/jisr/bin/pip install --require-hashes -r /tmp/requirements.lock
COPY pyproject.toml README.md alembic.ini /app/
COPY jisr /app/jisr
COPY shared /app/shared
COPY services /app/services
COPY migrations /app/migrations
# Editable: Alembic's scripts stay next to the packages (shared/migrations.py finds them there).
RUN /opt/jisr/bin/pip install --no-deps -e /app

FROM python:3.11-slim-bookworm
# ffmpeg's libraries come with aiortc's wheels; nothing else is needed at run time.
RUN useradd --system --home-dir /var/lib/jisr --create-home --uid 10001 jisr
COPY --from=build /opt/jisr /opt/jisr
COPY --from=build /app /app
ENV PATH=/opt/jisr/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    JISR_DATA_DIR=/var/lib/jisr \
    JISR_HOST=0.0.0.0 \
    JISR_PORT=8000
USER jisr
WORKDIR /var/lib/jisr
VOLUME ["/var/lib/jisr"]
EXPOSE 8000
CMD ["jisr", "serve", "referral"]
