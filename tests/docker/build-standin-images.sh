#!/usr/bin/env bash
# Builds, offline, the stand-in images the docker tests run (no registry can be reached here):
#   inframock-test/base:2 Debian bookworm (debootstrap, from the Debian mirror apt uses) with
#                         python3, redis-server, memcached, postgresql and moto[server] in /opt/moto
#   inframock-test/aws    moto_server on 0.0.0.0:4566, account 000000000000 (stands in for LocalStack)
#   inframock-test/redis  redis-server on 0.0.0.0:6379 (stands in for redis:7-alpine)
#   inframock-test/memcached  memcached on 0.0.0.0:11211 (stands in for memcached:1.6-alpine)
#   inframock-test/postgres   postgres on 0.0.0.0:5432, trust auth (stands in for postgres:16-alpine)
#   inframock-test/crash  prints a line and exits 55 at start (LocalStack's "auth token needed" code)
# Runs once per machine: does nothing when the images exist. The rootfs is built inside the clone
# (tests/.work) and deleted after the import.
set -euo pipefail
cd "$(dirname "$0")/../.."

have() { docker image inspect "$1" >/dev/null 2>&1; }
if have inframock-test/aws && have inframock-test/redis && have inframock-test/crash \
  && have inframock-test/memcached && have inframock-test/postgres; then
  echo "stand-in images present"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }

# Tag 2: the base also holds memcached and postgresql (the presets of declared services).
if ! have inframock-test/base:2; then
  work="$PWD/tests/.work"
  root="$work/rootfs"
  rm -rf "$root"
  mkdir -p "$work"
  mirror=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?$|https?://[^ ]+/debian ' | head -n1 | tr -d ' ' || true)
  echo "debootstrap bookworm from ${mirror:-http://deb.debian.org/debian} ..."
  debootstrap --variant=minbase --include=python3,python3-venv,redis-server,memcached,postgresql bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log"; exit 1; }
  echo "moto[server] wheels ..."
  python3 -m pip download --quiet --dest "$root/tmp/wheels" -r requirements-dev.txt
  # A clean environment: the host's pip settings (PIP_FIND_LINKS, PIP_CERT, ...) name host paths.
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    /bin/sh -c 'python3 -m venv /opt/moto && /opt/moto/bin/pip install --quiet --no-index --find-links /tmp/wheels "moto[server]"'
  rm -rf "$root/tmp/wheels" "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  echo "docker import ..."
  tar -C "$root" -c . | docker import - inframock-test/base:2 >/dev/null
  rm -rf "$root"
fi

variant() {  # name, then --change arguments
  local name=$1; shift
  local id
  id=$(docker create inframock-test/base:2 /bin/true)
  docker commit "$@" "$id" "$name:latest" >/dev/null
  docker rm "$id" >/dev/null
}
variant inframock-test/aws --change 'ENV MOTO_ACCOUNT_ID=000000000000' --change 'EXPOSE 4566' \
  --change 'CMD ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "4566"]'
variant inframock-test/redis --change 'EXPOSE 6379' \
  --change 'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""]'
variant inframock-test/memcached --change 'EXPOSE 11211' \
  --change 'CMD ["memcached", "-u", "nobody", "-l", "0.0.0.0", "-p", "11211"]'
variant inframock-test/postgres --change 'EXPOSE 5432' \
  --change 'CMD ["su", "postgres", "-s", "/bin/sh", "-c", "/usr/lib/postgresql/15/bin/initdb -D /tmp/pg -U postgres --auth=trust >/dev/null && echo \"host all all all trust\" >> /tmp/pg/pg_hba.conf && exec /usr/lib/postgresql/15/bin/postgres -D /tmp/pg -h 0.0.0.0 -k /tmp"]'
variant inframock-test/crash \
  --change 'CMD ["/bin/sh", "-c", "echo boom: this stand-in refuses to start; exit 55"]'
docker image ls --filter reference='inframock-test/*'
