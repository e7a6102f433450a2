#!/usr/bin/env bash
# Installs the system packages the test suite starts for itself: Dovecot (IMAP), Chromium
# (browser tests) and PostgreSQL. Nothing is started or configured system-wide; the tests
# start private instances on loopback ports.
set -euo pipefail

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd dovecot-lmtpd)
[ -x /usr/lib/dovecot/submission ] || need+=(dovecot-submissiond)  # SMTP XOAUTH2 tests
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "The test suite needs these Debian packages: ${need[*]}" >&2
  echo "Install them as root:  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "Installing ${need[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
