# syntax=docker/dockerfile:1
#
# The oidc-sidecar image: Node.js 24 LTS on Debian bookworm (slim), production dependencies only, running as
# uid 65532 on a read-only root filesystem. helm/oidc-sidecar/README.md ("The image") says how it is built,
# tagged and published, and how big it is (about 215 MB on disk, 75 MB to pull).
#
#   docker build -t oidc-sidecar:0.1.0 .
#   docker run --rm --read-only -p 4180:4180 -p 9464:9464 \
#     -v "$PWD/sidecar.yaml:/etc/oidc-sidecar/config.yaml:ro" oidc-sidecar:0.1.0
#   docker run --rm -v "$PWD/sidecar.yaml:/etc/oidc-sidecar/config.yaml:ro" oidc-sidecar:0.1.0 check-config
#
# The configuration file is read from /etc/oidc-sidecar/config.yaml (OIDC_SIDECAR_CONFIG); any key can also be
# set as an environment variable OIDC_SIDECAR_<KEY_PATH>, secrets preferably as mounted files (…File keys).
#
# Pin the bases by digest for reproducible builds: --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:…
ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The JavaScript stages run on the build machine's platform (no emulation for them in multi-arch builds):
# their output is platform-independent, since no production dependency has native code or an install script
# (the image test checks the lockfile for that). Only the node binary comes from the target platform's
# image; the runtime stage's one RUN step (user, folders) runs on the target platform, so building for
# another architecture needs QEMU (binfmt), as `docker buildx` sets up.

# ---- production dependencies: what the runtime stage ships as node_modules ----------------------------
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No lifecycle scripts: no dependency needs one, and none may run at build time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- build: TypeScript and the other dev dependencies stay in this stage ------------------------------
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- the node binary of the target platform -----------------------------------------------------------
FROM ${NODE_IMAGE} AS node

# ---- runtime: Debian bookworm slim + the node binary of the same Node 24 image ---------------------------
# Only the node binary is taken from the Node image: npm, corepack, yarn and the C headers (about 90 MB) are
# not needed to run, and what is not shipped needs no patching.
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="oidc-sidecar" \
      org.opencontainers.image.description="OpenID Connect authentication sidecar: sign-in, Redis sessions and identity headers in front of an unmodified portal" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=node /usr/local/bin/node /usr/local/bin/node

# The unprivileged user (uid/gid 65532, as in distroless "nonroot"); the folders the chart mounts into; and
# `oidc-sidecar` on the PATH for `kubectl exec … -- oidc-sidecar check-config`.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --no-log-init nonroot \
 && mkdir -p /etc/oidc-sidecar/secrets /etc/oidc-sidecar/apps \
 && printf '#!/bin/sh\nexec node /app/dist/cli.js "$@"\n' > /usr/local/bin/oidc-sidecar \
 && chmod 0755 /usr/local/bin/oidc-sidecar \
 && node --version

ENV NODE_ENV=production \
    OIDC_SIDECAR_CONFIG=/etc/oidc-sidecar/config.yaml

WORKDIR /app
# Owned by root, read-only for the process: nothing under /app is written at run time.
# package.json sits next to dist/: the version is read from it.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist ./dist

# A numeric user, so that Kubernetes' runAsNonRoot can verify it. Nothing is written outside /tmp.
USER 65532:65532

# 4180: browsers and API clients. 9464: /metrics, /healthz, /readyz.
EXPOSE 4180 9464

# The metrics port from OIDC_SIDECAR_METRICS__PORT when set (a port changed in the configuration file only
# is not seen here; Kubernetes ignores HEALTHCHECK and uses the chart's probes).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.OIDC_SIDECAR_METRICS__PORT || 9464) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/cli.js"]
