// synthetic.mjs — images the browser tests generate: a CT-like phantom as 8-bit PNG and as
// 16-bit TIFF (HU + 1024), a colourful picture the gate must refuse, a truncated PNG (used when
// ../shared/data is absent, a user's clone), and CT studies, as a NIfTI-1 volume (.nii.gz) and
// as a folder of DICOM slices with a localiser. Encoders are minimal but standard.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, body) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  const tb = Buffer.concat([Buffer.from(type, 'ascii'), body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(tb));
  return Buffer.concat([len, tb, crc]);
}

/** PNG of `channels` (1 grey, 3 RGB) 8-bit samples, row-major. */
export function png(width, height, channels, pixels) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = channels === 3 ? 2 : 0;
  const raw = Buffer.alloc((width * channels + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * channels + 1)] = 0;
    for (let i = 0; i < width * channels; i++) raw[y * (width * channels + 1) + 1 + i] = pixels[y * width * channels + i];
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** Uncompressed little-endian 16-bit greyscale TIFF (one strip). */
export function tiff16(width, height, values) {
  const entries = [
    [256, 3, 1, width], [257, 3, 1, height], [258, 3, 1, 16], [259, 3, 1, 1], [262, 3, 1, 1],
    [273, 4, 1, 0], [277, 3, 1, 1], [278, 3, 1, height], [279, 4, 1, width * height * 2], [339, 3, 1, 1],
  ];
  const ifdSize = 2 + entries.length * 12 + 4;
  const dataOffset = 8 + ifdSize;
  const buf = Buffer.alloc(dataOffset + width * height * 2);
  buf.write('II', 0, 'ascii');
  buf.writeUInt16LE(42, 2);
  buf.writeUInt32LE(8, 4);
  buf.writeUInt16LE(entries.length, 8);
  entries.forEach(([tag, type, count, value], i) => {
    const at = 10 + i * 12;
    buf.writeUInt16LE(tag, at);
    buf.writeUInt16LE(type, at + 2);
    buf.writeUInt32LE(count, at + 4);
    const v = tag === 273 ? dataOffset : value;
    if (type === 3) buf.writeUInt16LE(v, at + 8); else buf.writeUInt32LE(v, at + 8);
  });
  values.forEach((v, i) => buf.writeUInt16LE(Math.max(0, Math.min(65535, Math.round(v))), dataOffset + 2 * i));
  return buf;
}

/** An axial chest CT phantom in Hounsfield units: air, body, two lungs with a few opacities. */
export function phantomHu(size) {
  const hu = new Float32Array(size * size);
  let seed = 7;
  const noise = () => { seed = (seed * 1103515245 + 12345) >>> 0; return (seed / 2 ** 32 - 0.5) * 40; };
  const inside = (x, y, cx, cy, rx, ry) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let v = -1000;
      if (inside(x, y, size / 2, size / 2, size * 0.44, size * 0.34)) v = 40;
      if (inside(x, y, size * 0.33, size / 2, size * 0.13, size * 0.22) || inside(x, y, size * 0.67, size / 2, size * 0.13, size * 0.22)) v = -850;
      if (inside(x, y, size * 0.3, size * 0.45, size * 0.03, size * 0.03)) v = -300;
      hu[y * size + x] = v + noise();
    }
  }
  return hu;
}

export function syntheticFiles() {
  const size = 256;
  const hu = phantomHu(size);
  const lung = Array.from(hu, (v) => Math.max(0, Math.min(255, ((v + 1350) / 1500) * 255)));
  const ctPng = png(size, size, 1, lung);
  const photo = [];
  for (let y = 0; y < 200; y++) for (let x = 0; x < 300; x++) photo.push((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256);
  const file = (name, buffer) => ({ name, mimeType: 'application/octet-stream', buffer });
  return [
    { label: 'generated CT-like PNG (model chosen by hand)', file: file('phantom.png', ctPng), model: 'ct', expect: { model: 'ct' }, heatmap: true },
    { label: 'generated 16-bit TIFF (HU + 1024)', file: file('phantom.tif', tiff16(size, size, Array.from(hu, (v) => v + 1024))), model: 'ct', expect: { model: 'ct' } },
    { label: 'generated colour picture', file: file('colours.png', png(300, 200, 3, photo)), expect: { refused: true } },
    { label: 'broken file', file: file('broken.png', ctPng.subarray(0, Math.floor(ctPng.length / 3))), expect: { error: 'malformed' } },
    { label: 'next file after the broken one', file: file('phantom.png', ctPng), model: 'ct', expect: { model: 'ct' } },
  ];
}

/** A folder of `n` phantom slices (a CT "series") as PNG files. */
export function syntheticSeries(dir, n) {
  for (let i = 0; i < n; i++) {
    const size = 192 + 16 * i;
    const hu = phantomHu(size);
    writeFileSync(join(dir, `slice-${i}.png`), png(size, size, 1, Array.from(hu, (v) => Math.max(0, Math.min(255, ((v + 1350) / 1500) * 255)))));
  }
}

/**
 * A phantom CT study in HU, superior slice first: `slices` axial slices of `size`², lungs on
 * slices `lungFrom`..`lungTo` only (soft tissue above and below, as at the neck and abdomen).
 */
export function phantomStudy(size, slices, lungFrom, lungTo) {
  const lung = phantomHu(size);
  const closed = Float32Array.from(lung, (v) => (v < -700 && v > -950 ? 40 : v));
  const n = size * size;
  const hu = new Int16Array(n * slices);
  for (let k = 0; k < slices; k++) {
    const src = k >= lungFrom && k <= lungTo ? lung : closed;
    for (let i = 0; i < n; i++) hu[k * n + i] = Math.round(src[i]);
  }
  return hu;
}

/**
 * A NIfTI-1 file (int16, gzip) of a study stored superior slice last, as scanners' NIfTI
 * exports usually are (RAS+ world, z rising with the slice index); `spacing` in mm.
 */
export function niftiGz(size, slices, hu, spacing = [0.7, 0.7, 2.5]) {
  const h = Buffer.alloc(352);
  h.writeInt32LE(348, 0);
  [3, size, size, slices, 1, 1, 1, 1].forEach((v, i) => h.writeInt16LE(v, 40 + 2 * i));
  h.writeInt16LE(4, 70); // datatype int16
  h.writeInt16LE(16, 72); // bitpix
  [1, ...spacing, 1, 1, 1, 1].forEach((v, i) => h.writeFloatLE(v, 76 + 4 * i));
  h.writeFloatLE(352, 108); // vox_offset
  h.writeFloatLE(1, 112); // scl_slope
  h.writeFloatLE(0, 116); // scl_inter
  h.writeInt16LE(0, 252); // qform_code
  h.writeInt16LE(1, 254); // sform_code: scanner
  const [sx, sy, sz] = spacing;
  [[-sx, 0, 0, (sx * size) / 2], [0, -sy, 0, (sy * size) / 2], [0, 0, sz, -sz * slices]].forEach((row, r) => row.forEach((v, i) => h.writeFloatLE(v, 280 + 16 * r + 4 * i)));
  h.write('n+1\0', 344, 'latin1');
  // Stored inferior first: slice k of the file is slice (slices - 1 - k) of `hu`.
  const n = size * size;
  const data = Buffer.alloc(2 * n * slices);
  for (let k = 0; k < slices; k++) {
    const from = (slices - 1 - k) * n;
    for (let i = 0; i < n; i++) data.writeInt16LE(hu[from + i], 2 * (k * n + i));
  }
  return gzipSync(Buffer.concat([h, data]), { level: 1 });
}

// One DICOM data element, explicit VR little endian.
function element(group, el, vr, value) {
  let body = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  if (body.length % 2) body = Buffer.concat([body, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
  const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(el, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(body.length, 8); else head.writeUInt16LE(body.length, 6);
  return Buffer.concat([head, body]);
}
const us = (v) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
const ds = (v) => v.map((x) => String(Number(x.toFixed(4)))).join('\\');

/**
 * One CT slice as a DICOM Part 10 file (explicit VR little endian, signed 16-bit HU):
 * `{study, series, number, instance, z, size, spacing, thickness, type, hu}`.
 */
export function dicomSlice(s) {
  const sop = `${s.series}.${s.instance}`;
  const ct = '1.2.840.10008.5.1.4.1.1.2';
  const meta = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', ct),
    element(0x0002, 0x0003, 'UI', sop),
    element(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1'),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  const pixels = Buffer.alloc(2 * s.hu.length);
  s.hu.forEach((v, i) => pixels.writeInt16LE(v, 2 * i));
  const half = (s.size * s.spacing) / 2;
  const body = Buffer.concat([
    element(0x0008, 0x0008, 'CS', s.type),
    element(0x0008, 0x0016, 'UI', ct),
    element(0x0008, 0x0018, 'UI', sop),
    element(0x0008, 0x0060, 'CS', 'CT'),
    element(0x0008, 0x103e, 'LO', s.description),
    element(0x0018, 0x0050, 'DS', ds([s.thickness])),
    element(0x0020, 0x000d, 'UI', s.study),
    element(0x0020, 0x000e, 'UI', s.series),
    element(0x0020, 0x0011, 'IS', String(s.number)),
    element(0x0020, 0x0013, 'IS', String(s.instance)),
    element(0x0020, 0x0032, 'DS', ds([-half, -half, s.z])),
    element(0x0020, 0x0037, 'DS', ds(s.orientation || [1, 0, 0, 0, 1, 0])),
    element(0x0028, 0x0002, 'US', us(1)),
    element(0x0028, 0x0004, 'CS', 'MONOCHROME2'),
    element(0x0028, 0x0010, 'US', us(s.rows || s.size)),
    element(0x0028, 0x0011, 'US', us(s.size)),
    element(0x0028, 0x0030, 'DS', ds([s.spacing, s.spacing])),
    element(0x0028, 0x0100, 'US', us(16)),
    element(0x0028, 0x0101, 'US', us(16)),
    element(0x0028, 0x0102, 'US', us(15)),
    element(0x0028, 0x0103, 'US', us(1)),
    element(0x0028, 0x1052, 'DS', '0'),
    element(0x0028, 0x1053, 'DS', '1'),
    element(0x7fe0, 0x0010, 'OW', pixels),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), element(0x0002, 0x0000, 'UL', groupLength), meta, body]);
}

/**
 * A folder holding one CT series of `slices` axial slices of `size`² (file names in no
 * anatomical order) and a localiser of its own series; returns the series' slice count.
 */
export function dicomStudyFolder(dir, size, slices, lungFrom, lungTo) {
  const hu = phantomStudy(size, slices, lungFrom, lungTo);
  const n = size * size;
  const study = '1.2.826.0.1.3680043.10.1200.42';
  for (let k = 0; k < slices; k++) {
    const file = dicomSlice({
      study, series: `${study}.2`, number: 2, instance: k + 1, z: 100 - 2.5 * k, size, spacing: 0.7, thickness: 2.5,
      type: 'ORIGINAL\\PRIMARY\\AXIAL', description: 'generated chest phantom', hu: hu.subarray(k * n, (k + 1) * n),
    });
    writeFileSync(join(dir, `IM${String((k * 7919 + 13) % 1009).padStart(4, '0')}`), file);
  }
  const scout = dicomSlice({
    study, series: `${study}.1`, number: 1, instance: 1, z: 0, size, spacing: 1.5, thickness: 1,
    type: 'ORIGINAL\\PRIMARY\\LOCALIZER', description: 'scout', hu: hu.subarray(0, n), orientation: [1, 0, 0, 0, 0, -1],
  });
  writeFileSync(join(dir, 'SCOUT0001'), scout);
  return slices;
}
