#!/usr/bin/env bash
# Create .venv with the pinned dependencies and make sure ffmpeg is present.
# `--test` also makes sure Debian's chromium is present: the report's browser test opens it headless.
# Idempotent: reruns only reinstall when pyproject.toml changed (stamp file .venv/.installed).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> ffmpeg missing: installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "error: ffmpeg/ffprobe not found. Install them first, e.g. 'sudo apt-get install -y ffmpeg'" >&2
    echo "       (Debian/Ubuntu; it also brings the MIT KEMAR HRIR set via libmysofa1), then rerun." >&2
    exit 1
  fi
fi

if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> chromium missing (the report's browser test needs it): installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: chromium not found; the tests open the HTML report in headless Chromium. Install it first," >&2
    echo "       e.g. 'sudo apt-get install -y chromium' (Debian/Ubuntu), or set CHROMIUM=/path/to/chrome, then rerun." >&2
    [ -n "${CHROMIUM:-}" ] || exit 1
  fi
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "error: Python 3.11 is required (torch 2.13.0 CPU wheel and the pins are for 3.11); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv with $PY"
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo ">> installing the project and its pinned dependencies into .venv (about a minute)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  touch .venv/.installed
fi
