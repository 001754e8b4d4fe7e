#!/usr/bin/env python3
"""Build docs/gradcam-review.jpg: Grad-CAM (deepest stage) of 20 external test images.

Rows: the first five MosMed CT-3 and five CT-2 slices of ct/manifest.csv (class covid
explained), then the first five Hannover and five OpenIST films of cxr/manifest.csv (the
predicted class explained). The overlays come from `ctxr classify --heatmap`; this script
only lays them out with a caption (source, truth, decision at the operating point, P(covid),
class explained). Needs Pillow and a release build of ctxr.

    python3 docs/gradcam-review.py [--weights weights] [--data ../shared/data] [--out docs/gradcam-review.jpg]
"""
import argparse
import csv
import json
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ap = argparse.ArgumentParser()
ap.add_argument("--weights", default="weights")
ap.add_argument("--data", default="../shared/data")
ap.add_argument("--out", default="docs/gradcam-review.jpg")
ap.add_argument("--ctxr", default="target/release/ctxr")
args = ap.parse_args()
data = Path(args.data)


def first(model, source, subtype, k):
    with open(data / model / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == source and (subtype is None or r["subtype"] == subtype)]
    return rows[:k]


def overlays(model, rows, extra, tmp):
    out = Path(tmp) / f"{model}-{rows[0]['path'].replace('/', '_')}"
    out.mkdir()
    files = [str(data / model / r["path"]) for r in rows]
    cmd = [args.ctxr, "classify", "--weights", args.weights, "--model", model, "--layer", "4", "--json", "--heatmap", str(out), *extra, *files]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    results = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    if len(results) != len(rows):
        raise SystemExit(f"expected {len(rows)} results, got {len(results)}: {res.stderr}")
    for r, o in zip(rows, results):
        p_covid = o["probabilities"][o["classes"].index("covid")]
        caption = f"{r['source']} {r['label']} {r['subtype']} -> {o['decision']['label']} P(covid)={p_covid:.2f} [explained: {o['heatmap']['class']}]"
        yield Image.open(o["heatmap"]["file"]).convert("RGB"), caption


with tempfile.TemporaryDirectory() as tmp:
    tiles = [
        *overlays("ct", first("ct", "mosmed", "CT-3", 5), ["--class", "covid"], tmp),
        *overlays("ct", first("ct", "mosmed", "CT-2", 5), ["--class", "covid"], tmp),
        *overlays("cxr", first("cxr", "hannover", None, 5), [], tmp),
        *overlays("cxr", first("cxr", "openist", None, 5), [], tmp),
    ]
    side, caption_h = 256, 40
    sheet = Image.new("RGB", (5 * side, 4 * (side + caption_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, caption) in enumerate(tiles):
        im.thumbnail((side, side))
        x, y = (i % 5) * side, (i // 5) * (side + caption_h)
        sheet.paste(im, (x + (side - im.width) // 2, y + (side - im.height) // 2))
        lines, line = [], ""
        for word in caption.split():
            if line and len(line) + len(word) > 44:
                lines.append(line)
                line = ""
            line += word + " "
        lines.append(line)
        for k, text in enumerate(lines[:3]):
            draw.text((x + 3, y + side + 1 + 12 * k), text, fill="black")
    sheet.save(args.out, quality=85)
    print(f"{args.out}: {len(tiles)} tiles")
