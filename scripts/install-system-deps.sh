#!/usr/bin/env bash
# Install the system tools the test suite compares against, when they are missing:
#   dcm2niix     (Debian package dcm2niix)     DICOM geometry reference for the loader tests
#   dciodvfy     (Debian package dicom3tools)  DICOM validator for the SEG and writer tests
#   chromium     (Debian package chromium)     headless browser for the review-viewer tests
# Uses apt-get (Debian / Ubuntu), through sudo when not root. Tools already on PATH are left
# alone, so on a prepared machine this does nothing and needs no network. Used by the README's
# test command and by .ci/run.
set -euo pipefail

# Ubuntu ships chromium only as chromium-browser (a snap wrapper); Debian as chromium.
chromium_pkg=chromium
if [ -r /etc/os-release ] && . /etc/os-release && [ "${ID:-}" = ubuntu ]; then
    chromium_pkg=chromium-browser
fi

need=()
command -v dcm2niix >/dev/null || need+=(dcm2niix)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=("$chromium_pkg")

if [ ${#need[@]} -eq 0 ]; then
    echo "install-system-deps: dcm2niix, dciodvfy and chromium are installed; nothing to do"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "install-system-deps: missing ${need[*]} and no apt-get here; install these packages" \
         "with your system's package manager (the tests that need them fail in CI and skip" \
         "elsewhere)" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-system-deps: missing ${need[*]}; run as root: apt-get install ${need[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-system-deps: installing ${need[*]} with apt-get"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "${need[@]}" >/dev/null
echo "install-system-deps: installed ${need[*]}"
