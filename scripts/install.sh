#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine (CPU): the offline data
# packages MiniMMEB is built from (and FriBiDi, which Pillow needs to shape emoji sequences),
# a virtual environment, the CPU build of torch, cocoa.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(dataset-fashion-mnist fonts-noto-color-emoji unicode-data libfribidi0)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q "${missing[@]}"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev]'
touch .venv/.installed
