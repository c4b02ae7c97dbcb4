#!/usr/bin/env bash
# The HTML report in a real browser: builds `shadowmmu report` for an example,
# loads the page in headless Chromium, and checks that
#   - the rendered DOM holds the key elements (summary, listing rows with their
#     outcomes, both charts, the table pictures with their table nodes), and
#   - a screenshot of the page is not blank (many non-white pixels, several colours).
#
# usage: scripts/check-report.sh [SCENARIO]
#   SHADOWMMU_BINARY  the shadowmmu executable (default: .build/debug/shadowmmu, built if missing)
#   CHROMIUM          the browser (default: chromium, chromium-browser, google-chrome on PATH)
# Exit status: 0 passed, 1 failed, 77 did not run (no Chromium, or no python3 to read the screenshot).
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-examples/shadow-pae.scenario}

browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
    for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$candidate" >/dev/null 2>&1; then browser=$(command -v "$candidate"); break; fi
    done
fi
if [ -z "$browser" ] || ! [ -x "$(command -v "$browser" 2>/dev/null || echo "$browser")" ]; then
    echo "browser check did not run: no chromium (install it: apt-get install -y chromium)"
    exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "browser check did not run: no python3 to read the screenshot"
    exit 77
fi

binary=${SHADOWMMU_BINARY:-.build/debug/shadowmmu}
if ! [ -x "$binary" ]; then
    swift build --product shadowmmu >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/check-report.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Two pictures: one mid-way (after the first access) and one at the end.
first_access=$(grep -n -m1 -E '^[[:space:]]*(read|write|fetch)[[:space:]]' "$scenario" | cut -d: -f1)
lines=$(wc -l < "$scenario")
"$binary" report "$scenario" --at "$first_access" --at "$lines" -o "$work/report.html" >/dev/null

flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --hide-scrollbars
       --user-data-dir="$work/profile" --window-size=1280,2400)
url="file://$work/report.html"
# Chromium prints D-Bus and GPU noise on stderr; keep it for failures only.
if ! timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" > "$work/dom.html" 2> "$work/dom.err"; then
    echo "browser check FAILED: chromium --dump-dom did not finish"; tail -5 "$work/dom.err"; exit 1
fi
if ! timeout 120 "$browser" "${flags[@]}" --screenshot="$work/page.png" "$url" > /dev/null 2> "$work/shot.err"; then
    echo "browser check FAILED: chromium --screenshot did not finish"; tail -5 "$work/shot.err"; exit 1
fi

python3 - "$work/dom.html" "$work/page.png" "$first_access" "$lines" <<'PY'
import re, struct, sys, zlib

dom_path, png_path, first_access, last_line = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
dom = open(dom_path, encoding="utf-8").read()
problems = []

def need(pattern, what, minimum=1):
    found = len(re.findall(pattern, dom))
    if found < minimum:
        problems.append(f"{what}: found {found}, expected at least {minimum}")
    return found

need(r'<header id="summary"', "the summary header")
need(r'<section id="listing"', "the listing section")
rows = need(r'<tr id="line-\d+" class="command', "listing rows of commands", 5)
need(r'<tr id="line-\d+" class="command ok', "rows of accesses that completed")
need(r'<span class="badge ok">ok</span>', "ok badges")
need(r'<svg class="chart timeline-chart" id="timeline-chart"', "the timeline chart")
need(r'<rect class="bar bar-exits"', "exit bars in the timeline")
need(r'<svg class="chart counters-chart" id="counters-chart"', "the counters chart")
need(r'<polyline class="series series-', "counter lines")
need(rf'<figure class="table-picture" id="tables-at-{first_access}"', f"the picture after line {first_access}")
need(rf'<figure class="table-picture" id="tables-at-{last_line}"', f"the picture after line {last_line}")
nodes = need(r'<g class="table-node side-guest', "guest tables drawn", 2)
need(r'<g class="table-node side-hypervisor', "hypervisor tables drawn", 2)
if re.search(r'(src|href)="https?:', dom) or "<script" in dom:
    problems.append("the rendered page references the network or runs a script")

# The screenshot: decode the PNG (8-bit RGB/RGBA, non-interlaced, as Chromium writes it).
data = open(png_path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("browser check FAILED: the screenshot is not a PNG")
pos, idat, width = 8, b"", 0
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        if depth != 8 or colour not in (2, 6) or interlace:
            sys.exit(f"browser check FAILED: unexpected PNG format (depth {depth}, colour type {colour})")
        channels = 3 if colour == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
raw = zlib.decompress(idat)
stride = width * channels
previous = bytearray(stride)
non_white, colours = 0, set()
for row in range(height):
    start = row * (stride + 1)
    kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    for i in range(stride):
        left = line[i - channels] if i >= channels else 0
        up = previous[i]
        corner = previous[i - channels] if i >= channels else 0
        if kind == 1: line[i] = (line[i] + left) & 0xFF
        elif kind == 2: line[i] = (line[i] + up) & 0xFF
        elif kind == 3: line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
    for x in range(0, stride, channels * 4):  # every fourth pixel is plenty
        pixel = bytes(line[x:x + 3])
        colours.add(pixel)
        if pixel != b"\xff\xff\xff":
            non_white += 1
    previous = line
sampled = (width // 4) * height
if non_white < sampled // 100:
    problems.append(f"the screenshot is (nearly) blank: {non_white} of {sampled} sampled pixels are not white")
if len(colours) < 8:
    problems.append(f"the screenshot has only {len(colours)} colours")

if problems:
    print("browser check FAILED:")
    for problem in problems:
        print("  - " + problem)
    sys.exit(1)
print(f"browser check passed: {rows} command rows, {nodes}+ guest tables in the rendered DOM; "
      f"screenshot {width}x{height}, {non_white}/{sampled} sampled pixels not white, {len(colours)} colours")
PY
