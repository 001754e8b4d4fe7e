#!/usr/bin/env bash
# Seed the fuzz corpora: the generated hostile corpus (tests/corpus, written by
# `cargo run --release -p ctxr-lab -- corpus`) and, when ../shared is present, the DICOM/TIFF
# decoder samples and the small odd inputs. The dicom target's first byte picks the framing:
# even = the rest follows a preamble and "DICM", odd = the rest is a bare data set. The nifti
# target's first byte: even = the rest as it is, odd = the rest is gzip-compressed first, so
# its seeds are the volumes uncompressed behind 0x00 (plain) or 0x01 (were gzip).
set -euo pipefail
cd "$(dirname "$0")"
shared=../../shared/data
mkdir -p corpus/decode corpus/dicom corpus/nifti
add() { # add FILE
  local f=$1 name
  name=$(basename "$f")
  [ "$name" = expected.json ] && return
  [ "$(stat -c %s "$f")" -le 1048576 ] || return 0
  cp "$f" "corpus/decode/$name"
  if [ "$(dd if="$f" bs=1 skip=128 count=4 2>/dev/null | tr -d "\\0")" = DICM ]; then
    { printf '\x00'; tail -c +133 "$f"; } > "corpus/dicom/$name"
  elif [[ "$name" == *.dcm || "$name" == ct-* ]]; then
    { printf '\x01'; cat "$f"; } > "corpus/dicom/$name"
  fi
}
for f in ../tests/corpus/*; do add "$f"; done
for f in ../tests/corpus/*.nii ../tests/corpus/*.nii.gz ../tests/corpus/*.hdr ../tests/nifti/*.nii ../tests/nifti/*.nii.gz; do
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 1048576 ] || continue
  name=$(basename "$f")
  if [[ "$name" == *.gz ]]; then
    { printf '\x01'; gzip -dc "$f" 2>/dev/null | head -c 1048576 || true; } > "corpus/nifti/$name"
  else
    { printf '\x00'; cat "$f"; } > "corpus/nifti/$name"
  fi
done
if [ -d "$shared" ]; then
  while IFS= read -r f; do add "$f"; done < <(find "$shared/ct/decoder-samples" "$shared/odd-inputs" -type f 2>/dev/null)
fi
echo "seeded: $(ls corpus/decode | wc -l) decode, $(ls corpus/dicom | wc -l) dicom, $(ls corpus/nifti | wc -l) nifti"
