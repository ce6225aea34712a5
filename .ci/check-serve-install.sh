#!/usr/bin/env bash
# A serving host's install, checked for real: `pip install '.[serve]'` into a fresh venv (locked versions),
# then `raqib serve` answers /readyz and /v1/score with a bundle, `raqib --version` and `raqib db upgrade`
# work, a training command says which extra it needs, and mlflow, matplotlib and Dask are not there.
#
#   bash .ci/check-serve-install.sh        (make check-serve-install; needs `make install` for the bundle)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
MAIN_PYTHON=${MAIN_PYTHON:-$REPO/.venv/bin/python}
PYTHON=${PYTHON:-python3}
LOCK=$REPO/.ci/requirements.lock
started=$SECONDS

work=$(mktemp -d -t raqib-serve-install-XXXXXX)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-serve-install: FAILED: $*" >&2; [ -f "$work/server.log" ] && tail -n 40 "$work/server.log" >&2; exit 1; }

# 1. A tiny bundle, trained with the main venv the way the tests' tiny_bundle fixture does (seconds).
echo "check-serve-install: exporting a tiny bundle with the main venv"
"$MAIN_PYTHON" - "$work/bundle" <<'EOF'
import sys
from pathlib import Path

from tests.conftest import fit_tiny_pipeline, write_tiny_bundle

write_tiny_bundle(fit_tiny_pipeline(), Path(sys.argv[1]), version="0-serve-install")
EOF

# 2. The checkout's files (tracked and new, not ignored) copied out, so the build leaves nothing in it
#    and nothing of the checkout is importable from the fresh venv.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$work/src"

echo "check-serve-install: pip install '.[serve]' into a fresh venv"
"$PYTHON" -m venv "$work/venv"
VENV_BIN=$work/venv/bin
# No byte-compiling of every installed module: the check imports a fraction of them, and it is the slow part.
"$VENV_BIN/python" -m pip install -q --no-compile -c "$LOCK" "$work/src[serve]"
cd "$work"  # never the checkout: nothing may be imported from there

# 3. What a serving install must not have.
for module in mlflow matplotlib dask; do
  if "$VENV_BIN/python" -c "import $module" 2>/dev/null; then fail "'import $module' works in a serve-only install"; fi
done

"$VENV_BIN/python" -c 'import importlib.util as u; print("check-serve-install: also absent:",
  ", ".join(m for m in ("pandas", "pyarrow", "distributed") if u.find_spec(m) is None) or "none")'

# 4. The command: its version, the store's migrations, and a clear message for what needs [train].
version=$("$VENV_BIN/raqib" --version) || fail "raqib --version"
[[ "$version" == "raqib "* ]] || fail "raqib --version printed '$version'"
"$VENV_BIN/raqib" db upgrade --state-dir "$work/state" >/dev/null || fail "raqib db upgrade"
if "$VENV_BIN/raqib" promote >"$work/promote.log" 2>&1; then fail "raqib promote worked without mlflow"; fi
grep -q "pip install 'raqib\[train\]'" "$work/promote.log" || fail "raqib promote: $(cat "$work/promote.log")"
if grep -q Traceback "$work/promote.log"; then fail "raqib promote printed a traceback"; fi

# 5. The server, on a free loopback port.
port=$("$VENV_BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
env -u PROMETHEUS_MULTIPROC_DIR RAQIB_MODEL_DIR="$work/bundle" RAQIB_STATE_DIR="$work/state" \
  "$VENV_BIN/raqib" serve --port "$port" >"$work/server.log" 2>&1 &
server=$!
ready=""
for _ in $(seq 240); do
  if curl -sf "$base/readyz" >/dev/null; then ready=yes; break; fi
  kill -0 "$server" 2>/dev/null || fail "raqib serve exited during start-up"
  sleep 0.25
done
[ -n "$ready" ] || fail "raqib serve never became ready"
answer=$(curl -sS -f -H 'Content-Type: application/json' \
  --data-binary '{"comment": {"text": "للتواصل واتساب 0551234567 ربح مضمون يوميا"}}' "$base/v1/score") \
  || fail "POST /v1/score"
echo "$answer" | "$VENV_BIN/python" -c 'import json, sys; a = json.load(sys.stdin); assert a["label"] and a["action"], a' \
  || fail "POST /v1/score answered $answer"
curl -sf "$base/docs" >/dev/null || fail "GET /docs"
kill "$server" && wait "$server" 2>/dev/null || true
server=""
echo "check-serve-install: OK in $((SECONDS - started))s ($version; /v1/score answered $(echo "$answer" | head -c 120)...)"
