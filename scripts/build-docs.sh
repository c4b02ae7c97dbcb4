#!/usr/bin/env bash
# Builds the DocC catalogue of each library as HTML, and fails on any
# warning DocC reports — above all a ``Symbol`` link that resolves to
# nothing, or a <doc:Article> that does not exist.
#
#   scripts/build-docs.sh [OUTPUT-FOLDER]      (default: .build/docs)
#
# It needs only the toolchain: `swift package dump-symbol-graph` extracts
# each module's public symbols, and the toolchain's `docc convert` builds
# Sources/<Module>/<Module>.docc against them, one archive per module
# (OUTPUT-FOLDER/<Module>.doccarchive). No package plugin is involved.
# Open an archive with `docc preview`, or serve it as static files.
set -euo pipefail
cd "$(dirname "$0")/.."

modules=(X86Paging HostPlatform MMUEncoding KVMCatalogue ShadowMMU VirtualMachine ScenarioLanguage ScenarioRuntime ScenarioVerification ScenarioVisualization GuestWorkloads RealKVM Conformance)
output="${1:-.build/docs}"

swift_bin="$(dirname "$(command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)")"
docc="${DOCC:-$(command -v docc 2>/dev/null || echo "$swift_bin/docc")}"
if [ ! -x "$docc" ]; then
    echo "build-docs: no docc found (looked on PATH and at $docc); set DOCC=/path/to/docc" >&2
    exit 2
fi

echo "build-docs: extracting symbol graphs" >&2
graphs="$(swift package dump-symbol-graph --minimum-access-level public | sed -n 's/^Files written to //p' | tail -n 1)"
if [ -z "$graphs" ] || [ ! -f "$graphs/X86Paging.symbols.json" ]; then
    echo "build-docs: swift package dump-symbol-graph wrote no symbol graphs (expected 'Files written to …')" >&2
    exit 1
fi

mkdir -p "$output"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for module in "${modules[@]}"; do
    catalogue="Sources/$module/$module.docc"
    if [ ! -d "$catalogue" ]; then
        echo "build-docs: $catalogue is missing" >&2
        failed=1
        continue
    fi
    # Only this module's graphs (its own, and its extensions of other modules').
    mkdir -p "$scratch/$module"
    cp "$graphs/$module.symbols.json" "$scratch/$module/"
    cp "$graphs/$module"@*.symbols.json "$scratch/$module/" 2>/dev/null || true
    log="$scratch/$module.log"
    if "$docc" convert "$catalogue" \
        --additional-symbol-graph-dir "$scratch/$module" \
        --fallback-display-name "$module" \
        --fallback-bundle-identifier "shadowmmu.$module" \
        --output-path "$output/$module.doccarchive" \
        --warnings-as-errors >"$log" 2>&1; then
        echo "build-docs: $module → $output/$module.doccarchive" >&2
    else
        echo "build-docs: $module: docc reported problems:" >&2
        grep -E -A6 '^(warning|error)' "$log" >&2 || cat "$log" >&2
        failed=1
    fi
done
exit "$failed"
