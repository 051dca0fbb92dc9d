# syntax=docker/dockerfile:1
# The platform's image: one wheel in a virtual environment on a slim Python, run as a
# non-root user; scripts/entrypoint picks the process (web, worker, beat, migrate).
#   docker build -t registry.example.org/credits:0.1.0 .
#   docker run registry.example.org/credits:0.1.0 migrate
# See docs/deploy.md for the settings it needs and what the tests verify of it.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# Build: the wheel, and a virtual environment with it and its dependencies. Every
# dependency ships wheels for this platform, so no compiler is installed even here.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY credits ./credits
COPY admin_ui ./admin_ui
COPY migrations ./migrations
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install /wheels/credits-*.whl

# Run: the virtual environment and the entrypoint, nothing of the build.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CREDITS_VAR_DIR=/var/lib/credits
RUN groupadd --system --gid 10001 credits \
    && useradd --system --uid 10001 --gid credits --home-dir /var/lib/credits \
        --create-home --shell /usr/sbin/nologin credits
COPY --from=build /opt/venv /opt/venv
COPY scripts/entrypoint /usr/local/bin/credits-entrypoint
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/credits
EXPOSE 8000
ENTRYPOINT ["credits-entrypoint"]
CMD ["web"]
