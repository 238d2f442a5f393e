# oneoff in a container: the server (default target) and the agent (target
# "agent"). See docs/install.md, "Containers".
#
#   podman build -t oneoff .                   # the server
#   podman build -t oneoff-agent --target agent .
#
# BASE is any Debian 12 image. No registry is needed: one can be made from
# Debian's packages (what tests/container_test.ts does):
#   mmdebstrap --variant=minbase --include=ca-certificates bookworm base.tar
#   podman import base.tar localhost/debian:bookworm-slim
ARG BASE=localhost/debian:bookworm-slim

# --- build: Deno from npm, then every dependency cached inside the image ---
FROM ${BASE} AS build
ARG DENO_VERSION=2.9.6
# npm pulls in some 400 small packages: unpack them without fsync.
RUN echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/unsafe-io \
 && apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Behind a proxy that inspects TLS, pass its CA bundle for the downloads only
# (it stays out of the image): --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=ca-certificates,required=false \
    if [ -f /run/secrets/ca-certificates ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca-certificates; fi \
 && npm install -g --no-audit --no-fund "deno@${DENO_VERSION}" \
 && install -m 0755 "$(npm root -g)/deno/deno" /usr/local/bin/deno \
 && deno --version
ENV DENO_DIR=/opt/oneoff/.deno DENO_NO_UPDATE_CHECK=1
WORKDIR /opt/oneoff
# Dependencies first, so that a change of the source alone reuses this layer.
COPY deno.json deno.lock ./
RUN --mount=type=secret,id=ca-certificates,required=false \
    if [ -f /run/secrets/ca-certificates ]; then export DENO_CERT=/run/secrets/ca-certificates; fi \
 && deno install --frozen
COPY . .
# Download and compile everything the roles load (main.ts imports them
# lazily), so the container starts without the network.
RUN --mount=type=secret,id=ca-certificates,required=false \
    if [ -f /run/secrets/ca-certificates ]; then export DENO_CERT=/run/secrets/ca-certificates; fi \
 && deno cache --frozen main.ts roles/mod.ts cli/mod.ts \
 && rm -rf tests bench .ci .git \
 && install -m 0755 deploy/oneoff /usr/local/bin/oneoff \
 && oneoff --help >/dev/null

# --- runtime: what both roles share ---
FROM ${BASE} AS runtime
ENV DENO_DIR=/opt/oneoff/.deno DENO_NO_UPDATE_CHECK=1 ONEOFF_HOME=/opt/oneoff
COPY --from=build /usr/local/bin/deno /usr/local/bin/oneoff /usr/local/bin/
COPY --from=build /opt/oneoff /opt/oneoff

# --- agent: runs as root (cgroups, mounts) and drops every run to uid 65534
# inside bubblewrap. A run sees this image's /usr: add the packages your
# apps need at run time (a Ruby, a PostgreSQL client...) here. It needs a
# privileged container; docs/install.md says which privileges and why.
FROM runtime AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap mount runc passt \
 && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/oneoff-agent
EXPOSE 5000
ENTRYPOINT ["oneoff", "agent"]
CMD ["--data-dir", "/var/lib/oneoff-agent", "--attach", "0.0.0.0:5000"]

# --- server (the default target): an unprivileged user, state in a volume ---
FROM runtime AS server
RUN useradd --system --uid 10001 --home-dir /var/lib/oneoff --shell /usr/sbin/nologin oneoff \
 && install -d -o oneoff -g oneoff -m 0750 /var/lib/oneoff
USER oneoff
VOLUME /var/lib/oneoff
EXPOSE 8080
# /readyz: the server answers and its database is reachable and migrated.
# Listening elsewhere than 8080 (--http): set ONEOFF_HEALTH_PORT to that port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ONEOFF_HEALTH_PORT:-8080} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"ready\":true' <&3"]
ENTRYPOINT ["oneoff", "server"]
CMD ["--http", "0.0.0.0:8080", "--data-dir", "/var/lib/oneoff"]
