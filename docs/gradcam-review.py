#!/usr/bin/env python3
"""Build docs/gradcam-review.jpg: Grad-CAM (deepest stage) of 20 images the shipped models
never trained on (`ctxr split` lists them: each model's held-out fold and external sets).

Rows: the first five COVID slices of MosMed (CT-2 or worse) and the first five lesion slices
of COVID-19-CT-Seg in the CT model's held-out fold (class covid explained), then the first
five Hannover and five OpenIST films (external for the X-ray model; the predicted class
explained). The overlays come from `ctxr classify --heatmap`; this script only lays them out
with a caption (source, truth, decision at the operating point, P(covid), class explained).
Needs Pillow and a release build of ctxr.

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


def never_trained(model):
    res = subprocess.run([args.ctxr, "split", "--model", model, "--weights", args.weights, "--data", str(data)], capture_output=True, text=True, check=True)
    return list(csv.DictReader(res.stdout.splitlines()))


def first(model, source, label, k, subtypes=None):
    rows = [r for r in never_trained(model) if r["source"] == source and r["label"] == label and (subtypes is None or r["subtype"] in subtypes)]
    return rows[:k]


def overlays(model, rows, extra, tmp):
    out = Path(tmp) / f"{model}-{rows[0]['path'].replace('/', '_')}"
    out.mkdir()
    files = [str(data / r["path"]) for r in rows]
    cmd = [args.ctxr, "classify", "--weights", args.weights, "--model", model, "--layer", "4", "--json", "--heatmap", str(out), *extra, *files]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    results = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    if len(results) != len(rows):
        raise SystemExit(f"expected {len(rows)} results, got {len(results)}: {res.stderr}")
    for r, o in zip(rows, results):
        p_covid = o["probabilities"][o["classes"].index("covid")]
        caption = f"{r['source']} ({r['set']}) {r['label']} {r['subtype']} -> {o['decision']['label']} P(covid)={p_covid:.2f} [explained: {o['heatmap']['class']}]"
        yield Image.open(o["heatmap"]["file"]).convert("RGB"), caption


with tempfile.TemporaryDirectory() as tmp:
    tiles = [
        *overlays("ct", first("ct", "mosmed", "covid", 5, {"CT-2", "CT-3", "CT-4"}), ["--class", "covid"], tmp),
        *overlays("ct", first("ct", "covid19-ct-seg", "covid", 5), ["--class", "covid"], tmp),
        *overlays("cxr", first("cxr", "hannover", "covid", 5), [], tmp),
        *overlays("cxr", first("cxr", "openist", "normal", 5), [], tmp),
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
