#!/usr/bin/env bash
# Renders rinha-scenario's HTML report (`rinha-scenario --report DIR` writes DIR/index.html) to
# a PNG with Debian's headless Chromium, and checks that the picture is not blank.
#
#   bash .ci/report-png.sh REPORT_HTML OUT_PNG [HEIGHT_PX]
#
# The page is opened from the file system with every host name resolving to nothing, so it
# renders only from what the file holds, as it must offline. The window is 1280 pixels wide and
# HEIGHT_PX tall (default 3000: the whole page of a run whose messages fit the window; what lies
# below is cut).
#
# The PNG is then decoded with Python's standard library alone (zlib and the PNG row filters),
# and the script prints its size, its distinct colours, the share of pixels that are not white
# and the share that are coloured (chart lines and bars; text is grey). A page is not blank when
# it has at least COLOURS_MIN distinct colours, INK_MIN of its pixels are not white and
# COLOURED_MIN are coloured: a white page has one colour, a page of text but no chart has no
# coloured pixels.
#
# Needs what `scripts/setup.sh report` installs (chromium, python3); checks, installs nothing.
# Exit status: 0 rendered and not blank; 1 Chromium failed or the PNG is blank or unreadable;
# 2 bad arguments, REPORT_HTML missing, or a tool missing.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
html=$1 png=$2 height=${3:-3000}
[ -f "$html" ] || { echo "report-png: $html is not a file" >&2; exit 2; }
[[ $height =~ ^[0-9]+$ ]] || { echo "report-png: HEIGHT_PX must be a number of pixels, not '$height'" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/setup.sh" --check report || exit 2

html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
mkdir -p "$(dirname "$png")"
png=$(cd "$(dirname "$png")" && pwd)/$(basename "$png")
rm -f "$png"

# Chromium writes a profile; it goes to a scratch directory removed at the end.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
if ! timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$profile" --force-device-scale-factor=1 \
    --host-resolver-rules='MAP * ~NOTFOUND' \
    --window-size="1280,$height" --screenshot="$png" "file://$html" >"$profile/chromium.log" 2>&1 ||
    [ ! -s "$png" ]; then
    cat "$profile/chromium.log" >&2
    echo "report-png: Chromium did not render $html to $png" >&2
    exit 1
fi

python3 - "$png" <<'PY'
import struct, sys, zlib

COLOURS_MIN = 64        # a white page has 1; antialiased text and chart lines give hundreds
INK_MIN = 0.02          # share of pixels that are not white
COLOURED_MIN = 0.001    # share of pixels whose channels differ by more than COLOURED_SPREAD
COLOURED_SPREAD = 80    # grey text has equal channels; the charts' lines and bars do not

path = sys.argv[1]
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"report-png: {path} is not a PNG")
chunks, at = {}, 8
while at < len(data):
    length, kind = struct.unpack(">I4s", data[at:at + 8])
    chunks.setdefault(kind, []).append(data[at + 8:at + 8 + length])
    at += 12 + length
width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
channels = {2: 3, 6: 4}.get(colour_type)
if depth != 8 or channels is None or interlace != 0:
    sys.exit(f"report-png: {path}: unexpected PNG form (depth {depth}, colour type {colour_type}, interlace {interlace})")
raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
stride = width * channels

def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

rows, previous = [], bytearray(stride)
for y in range(height):
    start = y * (stride + 1)
    kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    if kind == 1:
        for i in range(channels, stride):
            row[i] = (row[i] + row[i - channels]) & 255
    elif kind == 2:
        row = bytearray((r + p) & 255 for r, p in zip(row, previous))
    elif kind == 3:
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            row[i] = (row[i] + ((left + previous[i]) >> 1)) & 255
    elif kind == 4:
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up_left = previous[i - channels] if i >= channels else 0
            row[i] = (row[i] + paeth(left, previous[i], up_left)) & 255
    elif kind != 0:
        sys.exit(f"report-png: {path}: unknown row filter {kind}")
    rows.append(bytes(row))
    previous = row

colours, ink, coloured = set(), 0, 0
for row in rows:
    for x in range(0, stride, channels):
        r, g, b = row[x], row[x + 1], row[x + 2]
        colours.add((r, g, b))
        if r != 255 or g != 255 or b != 255:
            ink += 1
            if max(r, g, b) - min(r, g, b) > COLOURED_SPREAD:
                coloured += 1
pixels = width * height
print(f"report-png: {path}: {width}x{height} pixels, {len(colours)} distinct colours, "
      f"{100 * ink / pixels:.1f}% not white, {100 * coloured / pixels:.2f}% coloured")
problems = []
if len(colours) < COLOURS_MIN:
    problems.append(f"fewer than {COLOURS_MIN} distinct colours")
if ink < INK_MIN * pixels:
    problems.append(f"less than {100 * INK_MIN:.0f}% of the pixels not white")
if coloured < COLOURED_MIN * pixels:
    problems.append(f"less than {100 * COLOURED_MIN:.1f}% of the pixels coloured (no chart drawn?)")
if problems:
    sys.exit(f"report-png: {path} looks blank: " + "; ".join(problems))
PY
