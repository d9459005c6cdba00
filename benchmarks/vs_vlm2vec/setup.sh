#!/usr/bin/env bash
# Builds what benchmarks/vs_vlm2vec/run.py needs besides cocoa: VLM2Vec v1's source at a pinned
# commit, with vlm2vec-cpu.patch applied, and a venv of its own with the versions that source
# was written for (transformers 4.46.3, accelerate, peft, datasets as in its requirements.txt).
#
#   benchmarks/vs_vlm2vec/setup.sh [WORK_DIR] [VLM2VEC_GIT]
#
# WORK_DIR defaults to runs/vs_vlm2vec; VLM2VEC_GIT to the GitHub repository (any clone works).
# Install your own torch first on a GPU machine; here `pip install torch==2.13.0` is the CPU build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-runs/vs_vlm2vec}"
git_url="${2:-https://github.com/TIGER-AI-Lab/VLM2Vec.git}"
commit=28fdbdd68a66374ec1b53207ad7a24b9979f1ab6
mkdir -p "$work"
work="$(cd "$work" && pwd)"

if [ ! -d "$work/VLM2Vec/.git" ]; then
    git clone --quiet "$git_url" "$work/VLM2Vec"
fi
git -C "$work/VLM2Vec" checkout --quiet --force "$commit"
git -C "$work/VLM2Vec" apply "$here/vlm2vec-cpu.patch"

if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
fi
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet torch==2.13.0
"$work/venv/bin/pip" install --quiet -r "$here/requirements-vlm2vec.txt"
echo "VLM2Vec source: $work/VLM2Vec ($commit), venv: $work/venv"
