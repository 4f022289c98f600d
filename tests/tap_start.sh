# tap_start.sh: the start the small test scripts share (sourced, not a test:
# tests/run.sh runs tests/test_*.sh only): strict variables, BUILD, the
# repository root as the working directory, a temporary folder $tmp removed
# at exit, and ok/notok, counted in passed/failed for the script's last
# lines: echo "RESULT $passed $failed"; [ "$failed" -eq 0 ]
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.." || exit 2
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
notok() { echo "not ok - $1: $2"; failed=$((failed + 1)); }
