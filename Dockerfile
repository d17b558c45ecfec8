# The one image every vidjobs service in compose.yaml runs (`vidjobs <command>`).
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobs jobs
COPY workers workers
COPY migrations migrations
RUN pip install --no-cache-dir .

RUN useradd --create-home vidjobs && mkdir /data && chown vidjobs /data
USER vidjobs
ENV VIDJOBS_DATA_DIR=/data
ENTRYPOINT ["vidjobs"]
