# source-lofty: tap-lofty as an Airbyte source connector.
#   docker build -t airbyte/source-lofty:0.1.0 .
#   docker run --rm airbyte/source-lofty:0.1.0 spec
FROM python:3.11-slim

WORKDIR /airbyte/integration_code
# Only what the package needs (tests, simulator and benchmarks stay out of the image).
COPY pyproject.toml README.md ./
COPY tap_lofty ./tap_lofty
# tap_lofty/schemas is a symlink to ../schemas (the stream schemas ship in the package).
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[airbyte]' && useradd --create-home --uid 1000 airbyte

# The token cache of the OAuth settings lives under $HOME/.cache; the connector runs unprivileged.
USER airbyte

# Airbyte runs the image's entrypoint with spec / check / discover / read and their arguments.
ENV AIRBYTE_ENTRYPOINT="source-lofty"
ENTRYPOINT ["source-lofty"]

LABEL io.airbyte.name=airbyte/source-lofty
LABEL io.airbyte.version=0.1.0
