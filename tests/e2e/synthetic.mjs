// synthetic.mjs — images the browser tests generate when ../shared/data is absent (a user's
// clone): a CT-like phantom as 8-bit PNG and as 16-bit TIFF (HU + 1024), a colourful picture
// the gate must refuse, and a truncated PNG. Encoders are minimal but standard.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

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
