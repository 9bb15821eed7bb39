# Shared by scripts/test, scripts/demo and .ci/run: install what the nodes and contracts need.
# shellcheck shell=bash

ensure_npm() {
  if [ ! -x node_modules/.bin/anvil ] || [ ! -d node_modules/solc ]; then
    command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+ (apt-get install -y nodejs npm)" >&2; exit 1; }
    # `npm install` with the committed lock (exact versions) rather than `npm ci`: the registry
    # reachable here serves only anvil's linux-amd64 platform package, so the lock cannot list
    # the other platforms' optional packages and `npm ci` refuses it as out of sync.
    echo "==> npm install (anvil, solc; versions pinned by package-lock.json)"
    npm install --no-audit --no-fund
  fi
}

# apt_install WHAT PACKAGE...: installs Debian packages as root, or through sudo; otherwise
# fails naming the install step (WHAT says what is missing and any other way to provide it).
apt_install() {
  local what=$1
  shift
  echo "==> apt-get install -y $*"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    echo "$what is missing: run 'apt-get install -y $*' as root" >&2
    exit 1
  fi
}

ensure_litecoind() {
  if [ -n "${LITECOIND_EXE:-}" ]; then return; fi
  if ! command -v litecoind >/dev/null; then
    apt_install "litecoind (or set LITECOIND_EXE)" litecoind
  fi
}

# Python with venv, for scripts/api-fuzz (schemathesis is installed into a venv from PyPI).
ensure_python_venv() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install "Python 3 with venv" python3 python3-venv
  fi
}

# PostgreSQL's server binaries (initdb, pg_ctl, postgres) for the PostgreSQL store's tests, which
# start a throwaway cluster of their own (pg-store/src/testkit.rs looks in the same places).
have_initdb() {
  if [ -n "${PG_BIN:-}" ]; then [ -x "$PG_BIN/initdb" ]; return; fi
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then return 0; fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then return 0; fi
  done
  command -v initdb >/dev/null
}

ensure_postgres() {
  if have_initdb; then return; fi
  if [ -n "${PG_BIN:-}" ]; then
    echo "PG_BIN=$PG_BIN has no initdb: point it at PostgreSQL's bin directory, or unset it" >&2
    exit 1
  fi
  apt_install "PostgreSQL (or set PG_BIN)" postgresql
}

ensure_deps() {
  ensure_npm
  ensure_litecoind
  ensure_postgres
}
