#!/usr/bin/env bash
# Outputs unchanged: runs every image of both ../shared manifests and every file of the hostile
# corpus through the page's path (decode → gate → preprocess → model → decision, CPU) with this
# tree's `ctxr analyze` and with a reference commit's library, then compares the two: the same
# error kinds, the same gate verdicts and routing, bit-identical probabilities. Each image goes
# through twice: with the gate deciding ("auto") and with its manifest's model forced, so every
# image gets model probabilities even where the gate refuses it.
#
#   tests/compare/outputs.sh [REFERENCE_COMMIT]      (default 266cbc5, before the redesign)
#
# A check run by hand (about 15 minutes on 2 cores: one extra build of the library at the
# reference commit, 4 × 10 000 analyses), not part of `./build.sh test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ref=${1:-266cbc5}
data=${CTXR_SHARED_DATA:-$PWD/../shared/data}
[ -f "$data/ct/manifest.csv" ] || { echo "no shared data at $data" >&2; exit 2; }
work=$(mktemp -d)
keep=target/compare   # the two outputs stay here for a closer look
trap 'git worktree remove --force "$work/ref" >/dev/null 2>&1 || true; mkdir -p "$keep"; cp "$work"/*.jsonl "$keep"/ 2>/dev/null || true; rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

echo "== files" >&2
cargo build --release -q -p ctxr-lab --bin ctxr
"$CARGO_TARGET_DIR/release/ctxr" corpus --out tests/corpus
python3 - "$data" "$PWD/tests/corpus" > "$work/list.tsv" <<'PY'
import csv, os, sys
data, corpus = sys.argv[1], sys.argv[2]
for modality in ("ct", "cxr"):
    with open(os.path.join(data, modality, "manifest.csv"), newline="") as f:
        for row in csv.DictReader(f):
            path = os.path.join(data, modality, row["path"])
            print(f"{path}\tauto\n{path}\t{modality}")
for name in sorted(os.listdir(corpus)):
    if name != "expected.json":
        path = os.path.join(corpus, name)
        print(f"{path}\tauto\n{path}\tct\n{path}\tcxr")
PY
echo "$(wc -l < "$work/list.tsv") analyses per side" >&2

echo "== reference $ref" >&2
git worktree add -q --detach "$work/ref" "$ref"
mkdir -p "$work/ref/examples"
# The reference's library API, driven the way the page drives it (its Models::analyze).
cat > "$work/ref/examples/dump_outputs.rs" <<'RS'
use std::io::BufRead;
use ctxr::analysis::{ModelChoice, Models, Request};
fn bits(v: &[f32]) -> Vec<String> { v.iter().map(|x| format!("{:08x}", x.to_bits())).collect() }
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("weights dir"));
    let manifest = ctxr::weights::Manifest::parse(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut m = Models::new(ctxr::device::BackendKind::Cpu, ctxr::device::cpu(), manifest.clone());
    for e in &manifest.models { m.load(&e.id, &std::fs::read(dir.join(&e.record)).unwrap()).unwrap(); }
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (path, choice) = line.split_once('\t').unwrap_or((&line, "auto"));
        let model = match choice { "ct" => ModelChoice::Ct, "cxr" => ModelChoice::Cxr, _ => ModelChoice::Auto };
        let bytes = std::fs::read(path).unwrap_or_default();
        let out = match pollster::block_on(m.analyze(&bytes, &Request { model, ..Request::default() })) {
            Ok((a, _)) => serde_json::json!({
                "file": path, "as": choice, "refused": a.refused, "model": a.model,
                "gate_accepted": a.gate.as_ref().map(|g| g.accepted),
                "gate_probability_bits": a.gate.as_ref().and_then(|g| g.probabilities.as_ref()).map(|p| bits(p)),
                "gate_distance_bits": a.gate.as_ref().and_then(|g| g.distance).map(|d| format!("{:08x}", d.to_bits())),
                "probability_bits": a.prediction.as_ref().map(|p| bits(&p.probabilities)),
                "decision": a.decision.as_ref().map(|d| d.label.clone()),
            }),
            Err(e) => serde_json::json!({"file": path, "as": choice, "error": e.kind()}),
        };
        println!("{out}");
    }
}
RS
(cd "$work/ref" && cargo build --release -q --example dump_outputs)
(cd "$work/ref" && "$CARGO_TARGET_DIR/release/examples/dump_outputs" weights < "$work/list.tsv" > "$work/ref.jsonl")

echo "== this tree" >&2
for mode in auto ct cxr; do
  awk -F'\t' -v m="$mode" '$2 == m { print $1 }' "$work/list.tsv" \
    | "$CARGO_TARGET_DIR/release/ctxr" analyze --weights weights --model "$mode" --stdin >> "$work/new.jsonl"
done

echo "== compare" >&2
python3 - "$work/ref.jsonl" "$work/new.jsonl" <<'PY'
import json, sys
def load(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        if r.get("error"):
            # A failure is compared by its kind alone.
            out[(r["file"], r["as"])] = (r["error"],)
            continue
        g = r.get("gate") or {}
        d = r.get("decision")
        out[(r["file"], r["as"])] = (
            r.get("error"), r.get("refused"), r.get("model"),
            r.get("gate_accepted", g.get("accepted")), r.get("gate_probability_bits"), r.get("gate_distance_bits"),
            r.get("probability_bits"), d if isinstance(d, str) or d is None else d.get("label"))
    return out
ref, new = load(sys.argv[1]), load(sys.argv[2])
assert ref.keys() == new.keys(), f"different files: {len(ref)} vs {len(new)}"
same = sum(ref[k] == new[k] for k in ref)
probs = sum(1 for k in ref if len(ref[k]) > 1 and ref[k][6] is not None)
probs_same = sum(1 for k in ref if len(ref[k]) > 1 and ref[k][6] is not None and len(new[k]) > 1 and ref[k][6] == new[k][6])
refused = sum(1 for k in ref if len(ref[k]) > 1 and ref[k][1])
errors = sum(1 for k in ref if len(ref[k]) == 1)
errors_same = sum(1 for k in ref if len(ref[k]) == 1 and ref[k] == new[k])
print(f"{len(ref)} analyses: {same} identical (probabilities bit for bit, gate verdict, route, decision, error kind); "
      f"probabilities bit-identical {probs_same}/{probs}; error kinds identical {errors_same}/{errors}; refused by the gate in both: {refused}")
diff = [k for k in ref if ref[k] != new[k]]
for k in diff[:20]:
    print("DIFF", k, ref[k], new[k])
sys.exit(1 if diff else 0)
PY
