#!/usr/bin/env bash
# Run by `make test`: the browser test (tests/browser) drives JupyterLab in Debian's chromium, never a
# browser that Playwright downloads. Installs chromium (and a CJK font, so screenshots of the Chinese
# lessons are readable) with apt-get when it is missing and this user can; otherwise says how, and the
# browser test fails with the same advice (LABKIT_SKIP_BROWSER=1 skips it on purpose).
set -uo pipefail
[[ "${LABKIT_SKIP_BROWSER:-}" == 1 ]] && exit 0
have_font() { command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh | grep -q .; }
if command -v chromium >/dev/null 2>&1 && have_font; then
    exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing Debian's chromium and a CJK font for the browser test (about a minute)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null \
        || echo "make test: apt-get could not install chromium; the browser test will say what to do" >&2
else
    echo "make test: no chromium here; install it ('sudo apt-get install chromium fonts-wqy-microhei') or set" \
         "LABKIT_SKIP_BROWSER=1 to skip the browser test" >&2
fi
exit 0
