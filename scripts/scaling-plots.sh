#!/usr/bin/env bash
# Measures the scaling curves of docs/scaling.md and draws them: builds
# Benchmarks/Profiling/ScalingCurves in release mode, runs it, and writes
# the CSV data and the SVG plots into docs/scaling/ (or OUTPUT-FOLDER).
#
#   scripts/scaling-plots.sh [--quick] [OUTPUT-FOLDER]
#
# --quick: fewer pages, reads and repetitions, processes up to 100 only —
# to see that everything runs, not to publish. The run is bounded: each
# curve has a fixed set of points, and the script stops the measurement
# after SCALING_TIMEOUT seconds (default 900). The first build of the
# benchmark package takes a few minutes; the measurements take about a
# minute (docs/scaling.md says how long on which machine).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [ "${1:-}" = "--quick" ]; then
    quick=(--quick)
    shift
fi
output="${1:-docs/scaling}"
case "$output" in /*) ;; *) output="$(pwd)/$output" ;; esac
timeout_seconds="${SCALING_TIMEOUT:-900}"

cd Benchmarks
echo "scaling-plots: building ScalingCurves (release)" >&2
swift build -c release --product ScalingCurves >&2
binary="$(swift build -c release --show-bin-path)/ScalingCurves"

mkdir -p "$output"
start=$(date +%s)
echo "scaling-plots: measuring into $output${quick:+ (quick)}" >&2
timeout "$timeout_seconds" "$binary" measure "${quick[@]}" "$output" >/dev/null
"$binary" plot "$output"
echo "scaling-plots: measured and drawn in $(( $(date +%s) - start )) s" >&2
