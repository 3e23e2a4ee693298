#!/usr/bin/env bash
# pgvector for the local PostgreSQL, for the knowledge index on PostgreSQL.
#
# Debian bookworm packages no pgvector for PostgreSQL 15 (nor does bookworm-backports);
# trixie has the source package (pgvector 0.8.0). We fetch that source from Debian's
# archive and build it against the installed server's headers: about ten seconds.
# Idempotent: does nothing when the server already offers the extension.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-$(ls -d /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | sort -V | tail -1)}
if [ -z "$PG_CONFIG" ] || [ ! -x "$PG_CONFIG" ]; then
    echo "note: no local PostgreSQL server found; pgvector not installed" >&2
    exit 0
fi
share=$("$PG_CONFIG" --sharedir)
if [ -f "$share/extension/vector.control" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: build pgvector for $("$PG_CONFIG" --version) as root (this script does it)" >&2
    exit 0
fi
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
sources=/etc/apt/sources.list.d/hangar-pgvector-src.sources
work=$(mktemp -d)
trap 'rm -rf "$work" "$sources"; apt-get update -qq >/dev/null 2>&1 || true' EXIT
cat > "$sources" <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
echo "building pgvector for PostgreSQL $major (once)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-server-dev-$major" dpkg-dev make gcc >/dev/null
(cd "$work" && apt-get source -qq --download-only pgvector >/dev/null 2>&1)
tar -xzf "$work"/pgvector_*.orig.tar.gz -C "$work"
make -s -C "$work"/pgvector-* PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
make -s -C "$work"/pgvector-* PG_CONFIG="$PG_CONFIG" install >/dev/null
echo "pgvector installed for PostgreSQL $major"
