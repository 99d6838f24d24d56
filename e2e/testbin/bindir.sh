#!/usr/bin/env bash
# Print the cache folder that holds (or will hold) the testbin binaries, without
# building anything. The key is a hash of both tools modules' go.mod and go.sum,
# so a change of any pinned version selects a new folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KAISCHED_TESTBIN_CACHE:-${HOME:-/root}/.cache/kaisched/testbin}"
key="$(cd "$here" && cat go.mod go.sum kwok/go.mod kwok/go.sum helm/go.mod helm/go.sum | sha256sum | cut -c1-16)"
echo "${cache}/${key}"
