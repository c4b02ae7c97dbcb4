#!/usr/bin/env bash
# The HTML report in a real browser: builds `shadowmmu report` for each
# scenario, loads each page in headless Chromium, and checks that
#   - the rendered DOM holds the key elements (summary, listing rows with their
#     outcomes, both charts, the table pictures with their table nodes), and the
#     report file itself holds no script and no network address;
#   - the layout holds, as measured by the browser (scripts/report-layout.js,
#     run in a copy of the page): no picture or chart reaches past its figure or
#     section or the page, or hides part of itself in a scroll box; no text label
#     or table lies outside its picture, no label outside its table's box; no two
#     titles, headings, captions or labels overlap. Each problem names the
#     elements (tag#id.class "text") and the numbers in CSS pixels;
#   - a screenshot of the page is not blank (many non-white pixels, several colours).
#
# usage: scripts/check-report.sh [SCENARIO...]
#        scripts/check-report.sh --page FILE.html
#   SCENARIO...  the scenarios to report on; with none, the built-in list:
#                shadow paging with a PAE guest and with a 32-bit guest, EPT,
#                nested EPT, nested NPT with a PAE L1, and a long run (a
#                `workload fork` guest of over a thousand commands)
#   --page FILE  measure the layout of a page already written (only the layout
#                check), e.g. a deliberately broken one to see the check fail
#   SHADOWMMU_BINARY  the shadowmmu executable (default: .build/debug/shadowmmu, built if missing)
#   CHROMIUM          the browser (default: chromium, chromium-browser, google-chrome on PATH)
# Exit status: 0 passed, 1 failed, 77 did not run (no Chromium, or no python3 to read the results).
set -euo pipefail
cd "$(dirname "$0")/.."

page=""
if [ "${1:-}" = "--page" ]; then
    if [ $# -ne 2 ]; then echo "usage: scripts/check-report.sh --page FILE.html" >&2; exit 2; fi
    page=$2
    if ! [ -r "$page" ]; then echo "browser check FAILED: cannot read $page" >&2; exit 2; fi
fi

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
    echo "browser check did not run: no python3 to read the results"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/check-report.XXXXXX")
trap 'rm -rf "$work"' EXIT

flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --hide-scrollbars
       --user-data-dir="$work/profile" --window-size=1280,2400)

# Lays out a copy of page $1 with the measuring script added (the page
# itself is left as it is) and writes the rendered DOM to $2.
measure() {
    python3 - "$1" scripts/report-layout.js "$work/probe.html" <<'PY'
import sys
page, script, probe = sys.argv[1:]
html = open(page, encoding="utf-8").read()
code = "<script>\n" + open(script, encoding="utf-8").read() + "\n</script>\n"
at = html.rfind("</body>")
open(probe, "w", encoding="utf-8").write(html[:at] + code + html[at:] if at >= 0 else html + code)
PY
    # The virtual-time budget lets the page finish loading and the script run
    # before the DOM is dumped. Chromium prints D-Bus and GPU noise on stderr;
    # keep it for failures only.
    if ! timeout 120 "$browser" "${flags[@]}" --virtual-time-budget=5000 --dump-dom "file://$work/probe.html" > "$2" 2> "$work/dom.err"; then
        echo "browser check FAILED: chromium --dump-dom did not finish"; tail -5 "$work/dom.err"; return 1
    fi
}

# Reads the layout findings, and for a report ($3 = report) its key elements
# and screenshot, from: the label $2, the rendered DOM $4, the page file $5,
# the screenshot $6, the picture lines $7 and $8.
judge() {
    python3 - "$@" <<'PY'
import html, json, re, struct, sys, zlib

label, mode, dom_path = sys.argv[1], sys.argv[2], sys.argv[3]
dom = open(dom_path, encoding="utf-8").read()
problems, facts = [], []

# The layout, as the browser measured it.
found = re.search(r'<pre id="layout-findings"[^>]*>(.*?)</pre>', dom, re.S)
if not found:
    problems.append("layout: the measuring script did not run (no pre#layout-findings in the rendered DOM)")
else:
    layout = json.loads(html.unescape(found.group(1)))
    counts = layout["counts"]
    if counts["pictures"] == 0:
        problems.append("layout: no picture or chart was measured")
    def span(rect):
        return f"x {rect['left']}–{rect['right']}, y {rect['top']}–{rect['bottom']}"
    for problem in layout["problems"]:
        subject = problem["element"] + (f" and {problem['other']}" if "other" in problem else "")
        where = [f"at {span(problem['at'])}"] if "at" in problem else []
        if "otherAt" in problem:
            where.append(f"the other at {span(problem['otherAt'])}")
        if "box" in problem:
            where.append(problem["box"] + (f" at {span(problem['boxAt'])}" if "boxAt" in problem else ""))
        problems.append(f"{problem['kind']}: {subject}: {problem['detail']}" + (f" ({'; '.join(where)})" if where else ""))
    facts.append(f"layout at {layout['pageWidth']} px: {counts['pictures']} pictures and charts, {counts['texts']} labels, "
                 f"{counts['pairs']} pairs measured")

if mode == "report":
    page_path, png_path, first_access, last_line = sys.argv[4:8]

    def need(pattern, what, minimum=1):
        count = len(re.findall(pattern, dom))
        if count < minimum:
            problems.append(f"{what}: found {count}, expected at least {minimum}")
        return count

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
    # The measured copy runs a script; the report itself must not.
    original = open(page_path, encoding="utf-8").read()
    if re.search(r'(src|href)="https?:', original) or "<script" in original:
        problems.append("the report references the network or runs a script")
    facts.insert(0, f"{rows} command rows, {nodes}+ guest tables in the rendered DOM")

    # The screenshot: decode the PNG (8-bit RGB/RGBA, non-interlaced, as Chromium writes it).
    data = open(png_path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"browser check FAILED: {label}: the screenshot is not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace:
                sys.exit(f"browser check FAILED: {label}: unexpected PNG format (depth {depth}, colour type {colour})")
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
    facts.append(f"screenshot {width}x{height}, {non_white}/{sampled} sampled pixels not white, {len(colours)} colours")

if problems:
    print(f"browser check FAILED: {label}:")
    for problem in problems:
        print("  - " + problem)
    sys.exit(1)
print(f"browser check passed: {label}: " + "; ".join(facts))
PY
}

if [ -n "$page" ]; then
    measure "$page" "$work/dom.html" || exit 1
    judge "$page" layout "$work/dom.html"
    exit
fi

binary=${SHADOWMMU_BINARY:-.build/debug/shadowmmu}
if ! [ -x "$binary" ]; then
    swift build --product shadowmmu >&2
fi

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    "$binary" workload fork --mmu shadow --mode pae --emit "$work/long-run-fork.scenario" >/dev/null
    scenarios=(examples/shadow-pae.scenario examples/shadow-32-bit.scenario examples/tdp-ept.scenario
               examples/nested-ept.scenario examples/nested-npt-pae.scenario "$work/long-run-fork.scenario")
fi

failed=0
for scenario in "${scenarios[@]}"; do
    label=${scenario#"$work/"}
    # Two pictures: one mid-way (after the first access) and one at the end.
    first_access=$(grep -n -m1 -E '^[[:space:]]*(read|write|fetch)[[:space:]]' "$scenario" | cut -d: -f1 || true)
    lines=$(wc -l < "$scenario")
    if [ -z "$first_access" ]; then echo "browser check FAILED: $label: no access to draw the tables after"; failed=$((failed + 1)); continue; fi
    if ! "$binary" report "$scenario" --at "$first_access" --at "$lines" -o "$work/report.html" > /dev/null 2> "$work/report.err"; then
        echo "browser check FAILED: $label: shadowmmu report failed"; cat "$work/report.err"; failed=$((failed + 1)); continue
    fi
    if ! measure "$work/report.html" "$work/dom.html"; then failed=$((failed + 1)); continue; fi
    if ! timeout 120 "$browser" "${flags[@]}" --screenshot="$work/page.png" "file://$work/report.html" > /dev/null 2> "$work/shot.err"; then
        echo "browser check FAILED: $label: chromium --screenshot did not finish"; tail -5 "$work/shot.err"; failed=$((failed + 1)); continue
    fi
    judge "$label" report "$work/dom.html" "$work/report.html" "$work/page.png" "$first_access" "$lines" || failed=$((failed + 1))
done

if [ "$failed" -gt 0 ]; then
    echo "browser check FAILED: $failed of ${#scenarios[@]} reports"
    exit 1
fi
echo "browser check passed: ${#scenarios[@]} reports"
