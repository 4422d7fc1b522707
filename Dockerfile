# kamibot: one process serving HTTP and running the background jobs. Data (SQLite file, vault key) in /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 KAMIBOT_DATA_DIR=/data KAMIBOT_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY fulfillment ./fulfillment
COPY risk ./risk
COPY storage ./storage
COPY locales ./locales
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data kamibot \
    && mkdir -p /data && chown kamibot /data
USER kamibot
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["kamibot"]
CMD ["run"]
