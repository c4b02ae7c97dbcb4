#!/bin/sh
# A long run of the input fuzzer (docs/fuzzing.md): the scenario parser, `run`
# and the Lackey trace parser on mutants of Tests/Fuzz/corpus, in a release
# build, one seed after another. An input that traps is kept as
# Tests/Fuzz/crashes/crash-SEED-CKSUM.input and one that breaks a promise as
# violation-SEED-N.input; commit them with the fix, and `swift test --filter
# FuzzCorpusReplay` replays them from then on.
#
#   scripts/fuzz-inputs.sh [FIRST-SEED [SEEDS [MUTANTS-PER-SEED]]]
#   scripts/fuzz-inputs.sh 1 8 200000
set -eu
cd "$(dirname "$0")/.."
first=${1:-1}
seeds=${2:-4}
mutants=${3:-100000}
findings=Tests/Fuzz/crashes

swift build -c release --product shadowmmu-fuzz
binary="$(swift build -c release --show-bin-path)/shadowmmu-fuzz"
mkdir -p "$findings"
failed=0
seed=$first
while [ "$seed" -lt $((first + seeds)) ]; do
    status=0
    "$binary" --seed "$seed" --iterations "$mutants" --findings "$findings" || status=$?
    if [ "$status" -gt 2 ] && [ -f "$findings/pending.input" ]; then
        sum=$(cksum < "$findings/pending.input" | cut -d' ' -f1)
        mv "$findings/pending.input" "$findings/crash-$seed-$sum.input"
        echo "seed $seed: the tool trapped (status $status) on $findings/crash-$seed-$sum.input"
        failed=1
    elif [ "$status" -ne 0 ]; then
        failed=1
    fi
    seed=$((seed + 1))
done
exit $failed
