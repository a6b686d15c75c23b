# Shared helpers of the CLI test scripts (sourced; not a test itself).
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_error() {  # expect_error FRAGMENT CMD...: one "error:" line with FRAGMENT, non-zero exit, no crash
  local frag=$1; shift
  set +e; err=$("$@" 2>&1 >/dev/null); rc=$?; set -e
  [ $rc -ne 0 ] || fail "expected failure: $*"
  [ $rc -lt 128 ] || fail "crashed ($rc): $*"
  [ "$(wc -l <<<"$err")" -eq 1 ] || fail "expected one error line, got: $err"
  grep -q "^error: .*$frag" <<<"$err" || fail "expected '$frag' in: $err"
}
