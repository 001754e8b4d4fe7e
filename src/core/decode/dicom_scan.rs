//! Byte budget for DICOM before parsing: walk the file's elements, reading only their headers,
//! and refuse any element whose declared length runs past the end of the file.
//!
//! The DICOM parser allocates a value's buffer from its declared length before reading it, so a
//! 10 kB file whose element claims 0xFFFF_FFF0 bytes made the browser module grow its memory to
//! 1.3 GB (which WebAssembly never gives back) before failing. The walk steps into sequences
//! and items, skips encapsulated pixel-data fragments, and stops (leaving the rest to the
//! parser) where the encoding cannot be followed without a dictionary: implicit-VR sequences of
//! defined length are checked as a whole, not element by element; deflated data sets are not
//! walked.

const UNDEFINED: u32 = 0xFFFF_FFFF;
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn u16(&self, at: usize, be: bool) -> Option<u16> {
        let b = self.bytes.get(at..at.checked_add(2)?)?;
        let a = [*b.first()?, *b.get(1)?];
        Some(if be { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }

    fn u32(&self, at: usize, be: bool) -> Option<u32> {
        let b = self.bytes.get(at..at.checked_add(4)?)?;
        let a = [*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?];
        Some(if be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}

fn long_vr(vr: &[u8]) -> bool {
    matches!(vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
}

/// `Err(detail)` when an element's length points past the end of `bytes` or an explicit VR is
/// not two upper-case letters. `raw` is a bare data set (no preamble, no file meta).
pub(super) fn check_lengths(bytes: &[u8], raw: bool) -> Result<(), String> {
    let mut w = Walker { bytes, pos: 0 };
    let mut enc = Encoding { explicit: true, big_endian: false };
    if raw {
        enc.explicit = bytes.get(4..6).is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase));
    } else {
        if bytes.get(128..132) == Some(b"DICM") {
            w.pos = 132;
        } else if bytes.get(..4) == Some(b"DICM") {
            w.pos = 4;
        }
        // File meta: always explicit VR little endian, group 0002.
        let mut ts = String::new();
        while w.u16(w.pos, false) == Some(0x0002) {
            let elem = w.u16(w.pos + 2, false).unwrap_or(0);
            let (header, len) = element_header(&w, Encoding { explicit: true, big_endian: false })?;
            let len = len as usize;
            if len > w.remaining().saturating_sub(header) {
                return Err(too_long(0x0002, elem, len, w.remaining().saturating_sub(header)));
            }
            if elem == 0x0010 {
                let v = bytes.get(w.pos + header..w.pos + header + len).unwrap_or_default();
                ts = String::from_utf8_lossy(v).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
            }
            w.pos += header + len;
        }
        match ts.as_str() {
            DEFLATED => return Ok(()),
            IMPLICIT_LE => enc.explicit = false,
            EXPLICIT_BE => enc.big_endian = true,
            _ => {}
        }
    }
    walk(&mut w, enc)
}

/// Header size and declared length of the element at the walker's position.
fn element_header(w: &Walker, enc: Encoding) -> Result<(usize, u32), String> {
    let be = enc.big_endian;
    let truncated = || "the file ends inside an element header".to_string();
    if !enc.explicit {
        return Ok((8, w.u32(w.pos + 4, be).ok_or_else(truncated)?));
    }
    let vr = w.bytes.get(w.pos + 4..w.pos + 6).ok_or_else(truncated)?;
    if !vr.iter().all(u8::is_ascii_uppercase) {
        let (g, e) = (w.u16(w.pos, be).unwrap_or(0), w.u16(w.pos + 2, be).unwrap_or(0));
        return Err(format!("element ({g:04X},{e:04X}) has an invalid value representation {:?}", String::from_utf8_lossy(vr)));
    }
    if long_vr(vr) { Ok((12, w.u32(w.pos + 8, be).ok_or_else(truncated)?)) } else { Ok((8, u32::from(w.u16(w.pos + 6, be).ok_or_else(truncated)?))) }
}

fn too_long(group: u16, elem: u16, len: usize, remaining: usize) -> String {
    format!("element ({group:04X},{elem:04X}) claims {len} bytes but only {remaining} remain in the file")
}

fn walk(w: &mut Walker, enc: Encoding) -> Result<(), String> {
    let be = enc.big_endian;
    let mut in_fragments = false;
    while w.remaining() >= 8 {
        let (Some(group), Some(elem)) = (w.u16(w.pos, be), w.u16(w.pos + 2, be)) else { break };
        if group == 0xFFFE {
            // Item and delimiters: tag + 4-byte length, in every encoding.
            let len = w.u32(w.pos + 4, be).unwrap_or(0);
            w.pos += 8;
            match elem {
                0xE000 if len != UNDEFINED => {
                    if len as usize > w.remaining() {
                        return Err(too_long(group, elem, len as usize, w.remaining()));
                    }
                    if in_fragments {
                        w.pos += len as usize; // a compressed fragment: bytes, not elements
                    }
                }
                0xE0DD if in_fragments => in_fragments = false,
                _ => {}
            }
            continue;
        }
        let (header, len) = element_header(w, enc)?;
        let is_sq = enc.explicit && w.bytes.get(w.pos + 4..w.pos + 6) == Some(b"SQ");
        if len == UNDEFINED {
            if (group, elem) == (0x7FE0, 0x0010) {
                in_fragments = true;
            } else if !is_sq && enc.explicit {
                // UN of undefined length holds implicit-VR content: leave it to the parser.
                return Ok(());
            }
            w.pos += header;
            continue;
        }
        let len = len as usize;
        let left = w.remaining().saturating_sub(header);
        if len > left {
            return Err(too_long(group, elem, len, left));
        }
        w.pos += header;
        if !is_sq {
            w.pos += len; // a value (or an implicit-VR sequence, checked as a whole)
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(g: u16, e: u16, vr: &[u8; 2], len: u32, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&g.to_le_bytes());
        b.extend_from_slice(&e.to_le_bytes());
        b.extend_from_slice(vr);
        if long_vr(vr) {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&len.to_le_bytes());
        } else {
            b.extend_from_slice(&(len as u16).to_le_bytes());
        }
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn honest_lengths_pass_and_a_lying_one_is_named() {
        let mut ok = el(0x0008, 0x0060, b"CS", 2, b"CT");
        ok.extend(el(0x7FE0, 0x0010, b"OW", 4, &[1, 2, 3, 4]));
        assert_eq!(check_lengths(&ok, true), Ok(()));
        let mut bad = el(0x0008, 0x0060, b"CS", 2, b"CT");
        bad.extend(el(0x0010, 0x0010, b"UT", 0xFFFF_FFF0, b"AB"));
        let e = check_lengths(&bad, true).unwrap_err();
        assert!(e.contains("(0010,0010) claims 4294967280 bytes"), "{e}");
    }

    #[test]
    fn lying_length_inside_a_sequence_item_is_found() {
        let inner = el(0x0028, 0x3006, b"OW", 0x7FFF_0000, &[0; 4]);
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend(inner);
        let mut ds = el(0x0008, 0x0060, b"CS", 2, b"CT");
        ds.extend(el(0x0028, 0x3010, b"SQ", item.len() as u32, &item));
        assert!(check_lengths(&ds, true).unwrap_err().contains("(0028,3006)"));
    }

    #[test]
    fn invalid_vr_and_fragments() {
        let mut bad = el(0x0008, 0x0060, b"CS", 2, b"CT");
        bad.extend(el(0x0018, 0x0015, b"c%", 2, b"CT"));
        assert!(check_lengths(&bad, true).unwrap_err().contains("invalid value representation"));
        // Encapsulated pixel data: fragments are skipped as bytes, even if they look like tags.
        let mut ds = el(0x0008, 0x0060, b"CS", 2, b"CT");
        ds.extend(el(0x7FE0, 0x0010, b"OB", UNDEFINED, &[]));
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0, 0x10, 0, 0x10, 0, b'U', b'T', 0xFF, 0xFF]);
        ds.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check_lengths(&ds, true), Ok(()));
    }
}
