#!/usr/bin/env python3
"""Write the NIfTI reference volumes in this folder and what nibabel reads from them.

Why: ctxr's NIfTI reader (src/core/decode/nifti.rs) is our own; it must agree with the reference
implementation. nibabel writes each file here (so the bytes follow nibabel's reading of the
standard, not ours) and reads it back into references.json: the Hounsfield values after
scl_slope/scl_inter in radiological axial order (SHA-256 of the values rounded to little-endian
int32, and min/max/mean), the voxel size, the world z of each slice and where a marked voxel
lands. The Rust test `nifti_references` decodes every file and compares.

Run once to (re)create the committed files (needs numpy and nibabel from PyPI; the test does not):
    python3 tests/nifti/make_references.py
"""

import gzip
import hashlib
import io
import json
import os

import nibabel as nib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261202)

# A chest-like phantom in RAS+ voxel order (axis 0 → patient's right, 1 → anterior,
# 2 → superior): air, a soft-tissue body, two lungs, and one bright marker voxel in the
# patient's RIGHT, ANTERIOR, SUPERIOR part so that any flip or transpose moves it.
X, Y, Z = 40, 32, 12
MARK = (31, 22, 9)  # x towards the right (x > centre), y anterior, z superior


def phantom():
    x, y, z = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
    cx, cy = (X - 1) / 2, (Y - 1) / 2
    hu = np.full((X, Y, Z), -1000, np.int16)
    body = ((x - cx) / 18) ** 2 + ((y - cy) / 13) ** 2 <= 1
    hu[body] = 40
    for side in (-1, 1):
        lung = ((x - cx - side * 8) / 6) ** 2 + ((y - cy) / 9) ** 2 <= 1
        hu[lung & (z > 1)] = -850
    hu += rng.integers(-20, 21, hu.shape).astype(np.int16)
    hu[MARK] = 1500
    return hu


def radiological(img):
    """nibabel's reading as ctxr's volume order: [slice][row][column] with columns running to
    the patient's left, rows to posterior, slices to inferior, and each slice's world z."""
    canon = nib.as_closest_canonical(img)
    v = canon.get_fdata(dtype=np.float64)
    if v.ndim == 4:
        v = v[..., 0]
    ours = v[::-1, ::-1, ::-1].transpose(2, 1, 0)
    A = canon.affine
    nx, ny, nz = v.shape[:3]
    zs = [float((A @ [(nx - 1) / 2, (ny - 1) / 2, nz - 1 - s, 1])[2]) for s in range(nz)]
    spacing = [float(np.linalg.norm(A[:3, i])) for i in range(3)]
    return ours, zs, spacing


def sha_i32(values):
    r = np.rint(values).astype("<i4")
    return hashlib.sha256(r.tobytes()).hexdigest()


def record(name, img, hounsfield, exact=True):
    path = os.path.join(HERE, name)
    data = img.to_bytes()
    if name.endswith(".gz"):
        # Fixed gzip mtime so that re-running gives the same bytes.
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
            f.write(img.to_bytes())
        data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    back = nib.load(path)
    ours, zs, spacing = radiological(back)
    slices, rows, cols = ours.shape
    m = np.argwhere(ours == ours.max())[0]
    return {
        "file": name,
        "nifti_version": 2 if isinstance(back, nib.Nifti2Image) else 1,
        "columns": cols,
        "rows": rows,
        "slices": slices,
        "spacing_mm": spacing,
        "slice_z_mm": zs,
        "hounsfield": hounsfield,
        "exact": exact,
        "sha256_i32le": sha_i32(ours.ravel()),
        "min": float(ours.min()),
        "max": float(ours.max()),
        "mean": float(ours.mean()),
        # Where the marker (the brightest voxel) lies: [slice, row, column].
        "marker": [int(m[0]), int(m[1]), int(m[2])],
    }


def main():
    hu = phantom()
    refs = []

    # 1. RAS+ storage, sform only, int16 HU, plain NIfTI-1.
    A = np.diag([0.7, 0.7, 2.5, 1.0])
    A[:3, 3] = [-14, -11, -100]
    img = nib.Nifti1Image(hu, A)
    img.set_qform(None, code=0)
    img.set_sform(A, code=2)
    refs.append(record("ras-int16.nii", img, True))

    # 2. LAS storage (x flipped, as many DICOM converters write), int16 stored as HU + 1024
    #    with scl_inter = -1024, gzip.
    las = hu[::-1].copy()
    A2 = A.copy()
    A2[0, 0] = -0.7
    A2[0, 3] = 14
    img = nib.Nifti1Image((las + 1024).astype(np.int16), A2)
    img.header.set_slope_inter(1.0, -1024.0)
    img.set_qform(A2, code=1)
    img.set_sform(A2, code=1)
    refs.append(record("las-int16-inter.nii.gz", img, True))

    # 3. LPS storage (x and y flipped, DICOM's patient axes), float32 HU, qform only, NIfTI-2.
    lps = hu[::-1, ::-1].astype(np.float32)
    A3 = A.copy()
    A3[0, 0], A3[1, 1] = -0.7, -0.7
    img = nib.Nifti2Image(lps, A3)
    img.set_sform(None, code=0)
    img.set_qform(A3, code=1)
    refs.append(record("lps-float32-qform.nii.gz", img, True))

    # 4. Stored as coronal planes (voxel axes x, z, y: slices along anterior→posterior), a small
    #    rotation about z, int16, NIfTI-2, big-endian.
    cor = hu.transpose(0, 2, 1)[:, :, ::-1].copy()  # axes: x, z, -y
    t = np.deg2rad(4)
    R = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    M = np.zeros((3, 3))
    M[:, 0] = R @ [0.7, 0, 0]
    M[:, 1] = R @ [0, 0, 2.5]
    M[:, 2] = R @ [0, -0.7, 0]
    A4 = np.eye(4)
    A4[:3, :3] = M
    A4[:3, 3] = [-14, 11, -100]
    img = nib.Nifti2Image(cor.astype(">i2"), A4, header=nib.Nifti2Header(endianness=">"))
    img.set_qform(None, code=0)
    img.set_sform(A4, code=1)
    refs.append(record("coronal-oblique-int16-be.nii", img, True))

    # 5. Float32 with fractional values (quantised on reading), NIfTI-1.
    frac = hu.astype(np.float32) + rng.uniform(-0.5, 0.5, hu.shape).astype(np.float32)
    img = nib.Nifti1Image(frac, A)
    img.set_sform(A, code=1)
    refs.append(record("ras-float32-fraction.nii", img, True, exact=False))

    # 6. 4-D uint8 (two volumes; the first is read), not Hounsfield, gzip.
    u8 = np.stack([np.clip((hu.astype(np.int32) + 1000) * 255 // 2500, 0, 255).astype(np.uint8)] * 2, axis=-1)
    u8[..., 1] = 0
    img = nib.Nifti1Image(u8, A)
    img.set_sform(A, code=1)
    refs.append(record("ras-uint8-4d.nii.gz", img, False))

    with open(os.path.join(HERE, "references.json"), "w") as f:
        json.dump({"nibabel": nib.__version__, "volumes": refs}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(refs)} volumes and references.json (nibabel {nib.__version__})")


if __name__ == "__main__":
    main()
