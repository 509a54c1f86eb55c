//! Binary-protocol parameters: the query attributes a MySQL 8.0.23+ client puts before the SQL
//! of a COM_QUERY, and the parameter block of a COM_STMT_EXECUTE (whose trailing parameters are
//! attributes). Layouts from the MySQL protocol documentation (`page_protocol_com_query`,
//! `page_protocol_com_stmt_execute`, `page_protocol_binary_resultset`) and Wireshark's
//! `packet-mysql.c` (`mysql_dissect_query_attributes`). Every read is checked: a parameter block
//! that runs past the bytes we have does not parse.

use super::{lenenc, lossy};
use crate::event::{field_type_name, QueryAttr, ATTRS_MAX};

/// Characters kept of an attribute's name and value.
const ATTR_TEXT_MAX: usize = 64;
/// `new_params_bind_flag` value saying types (and names) follow.
const NEW_PARAMS_BOUND: u8 = 1;
/// The unsigned flag in the second byte of a parameter's type.
const UNSIGNED_FLAG: u8 = 0x80;

const TYPE_DECIMAL: u8 = 0x00;
const TYPE_TINY: u8 = 0x01;
const TYPE_SHORT: u8 = 0x02;
const TYPE_LONG: u8 = 0x03;
const TYPE_FLOAT: u8 = 0x04;
const TYPE_DOUBLE: u8 = 0x05;
const TYPE_NULL: u8 = 0x06;
const TYPE_TIMESTAMP: u8 = 0x07;
const TYPE_LONGLONG: u8 = 0x08;
const TYPE_INT24: u8 = 0x09;
const TYPE_DATE: u8 = 0x0a;
const TYPE_TIME: u8 = 0x0b;
const TYPE_DATETIME: u8 = 0x0c;
const TYPE_YEAR: u8 = 0x0d;
const TYPE_NEWDATE: u8 = 0x0e;
const TYPE_VARCHAR: u8 = 0x0f;
const TYPE_BIT: u8 = 0x10;
/// JSON .. GEOMETRY (0xf5..=0xff) are all length-encoded strings in the binary protocol.
const TYPE_JSON: u8 = 0xf5;

/// Query attributes of a COM_QUERY (`body` is the payload after the command byte): the
/// attributes (the first [`ATTRS_MAX`]), how many there were, and the offset of the SQL.
pub(super) fn query_attrs(body: &[u8]) -> Option<(Vec<QueryAttr>, u64, usize)> {
    let (count, n1) = lenenc(body)?;
    let (sets, n2) = lenenc(body.get(n1..)?)?;
    // parameter_set_count is always 1 (the server rejects anything else).
    if sets != 1 {
        return None;
    }
    let at = n1 + n2;
    if count == 0 {
        return Some((Vec::new(), 0, at));
    }
    let block = Block::parse(body.get(at..)?, count, true)?;
    let attrs = block.params.into_iter().take(ATTRS_MAX).collect();
    Some((attrs, count, at + block.used))
}

/// The attributes of a COM_STMT_EXECUTE's parameter block. `block` starts at the null bitmap,
/// `count` parameters are in it (the statement's `placeholders` then the attributes), and
/// `named` says whether each type carries a name (CLIENT_QUERY_ATTRIBUTES).
pub(super) fn execute_attrs(
    block: &[u8],
    count: u64,
    placeholders: Option<u64>,
    named: bool,
) -> Vec<QueryAttr> {
    let Some(b) = Block::parse(block, count, named) else {
        return Vec::new();
    };
    b.params
        .into_iter()
        .enumerate()
        // Without the PREPARE's count, an attribute is a parameter with a name (placeholders
        // are sent nameless).
        .filter(|(i, p)| match placeholders {
            Some(n) => (*i as u64) >= n,
            None => !p.name.is_empty(),
        })
        .map(|(_, p)| p)
        .take(ATTRS_MAX)
        .collect()
}

/// A parsed parameter block: null bitmap, bind flag, types (and names), values.
struct Block {
    params: Vec<QueryAttr>,
    used: usize,
}

impl Block {
    fn parse(b: &[u8], count: u64, named: bool) -> Option<Block> {
        // Each parameter takes at least two bytes (its type): a count beyond that is not real.
        if count > b.len() as u64 / 2 {
            return None;
        }
        let n = usize::try_from(count).ok()?;
        let bitmap_len = n.div_ceil(8);
        let bitmap = b.get(..bitmap_len)?;
        if *b.get(bitmap_len)? != NEW_PARAMS_BOUND {
            // Types from an earlier execute: values cannot be sized without them.
            return None;
        }
        let mut at = bitmap_len + 1;
        let mut types = Vec::with_capacity(n.min(ATTRS_MAX * 4));
        let mut params = Vec::new();
        for _ in 0..n {
            let t = *b.get(at)?;
            let flags = *b.get(at + 1)?;
            at += 2;
            let name = if named {
                let (len, k) = lenenc(b.get(at..)?)?;
                let len = usize::try_from(len).ok()?;
                let raw = b.get(at + k..(at + k).checked_add(len)?)?;
                at += k + len;
                short(raw)
            } else {
                String::new()
            };
            types.push((t, flags & UNSIGNED_FLAG != 0));
            if params.len() < ATTRS_MAX * 4 {
                params.push(QueryAttr {
                    name,
                    type_name: field_type_name(t),
                    value: None,
                });
            }
        }
        for (i, &(t, unsigned)) in types.iter().enumerate() {
            let null = bitmap.get(i / 8).is_some_and(|m| m & (1 << (i % 8)) != 0);
            if null {
                continue;
            }
            let (value, k) = value(b.get(at..)?, t, unsigned)?;
            at += k;
            if let Some(p) = params.get_mut(i) {
                p.value = value;
            }
        }
        Some(Block { params, used: at })
    }
}

/// One binary-protocol value of type `t`: its text (None for a NULL type) and its length.
fn value(b: &[u8], t: u8, unsigned: bool) -> Option<(Option<String>, usize)> {
    let fixed = |n: usize| -> Option<[u8; 8]> {
        let s = b.get(..n)?;
        let mut a = [0u8; 8];
        a.get_mut(..n)?.copy_from_slice(s);
        Some(a)
    };
    let int = |n: usize| -> Option<(Option<String>, usize)> {
        let a = fixed(n)?;
        let u = u64::from_le_bytes(a);
        let text = if unsigned {
            u.to_string()
        } else {
            // Sign-extend from n bytes.
            let shift = 64 - 8 * n as u32;
            (((u << shift) as i64) >> shift).to_string()
        };
        Some((Some(text), n))
    };
    match t {
        TYPE_NULL => Some((None, 0)),
        TYPE_TINY => int(1),
        TYPE_SHORT | TYPE_YEAR => int(2),
        TYPE_LONG | TYPE_INT24 => int(4),
        TYPE_LONGLONG => int(8),
        TYPE_FLOAT => {
            let f = f32::from_bits(u64::from_le_bytes(fixed(4)?) as u32);
            Some((Some(f.to_string()), 4))
        }
        TYPE_DOUBLE => Some((Some(f64::from_le_bytes(fixed(8)?).to_string()), 8)),
        TYPE_DATE | TYPE_DATETIME | TYPE_TIMESTAMP | TYPE_NEWDATE => {
            let len = usize::from(*b.first()?);
            let d = b.get(1..1 + len)?;
            Some((Some(datetime(d)), 1 + len))
        }
        TYPE_TIME => {
            let len = usize::from(*b.first()?);
            let d = b.get(1..1 + len)?;
            Some((Some(time(d)), 1 + len))
        }
        TYPE_DECIMAL | TYPE_VARCHAR | TYPE_BIT | TYPE_JSON..=u8::MAX => {
            let (len, k) = lenenc(b)?;
            let len = usize::try_from(len).ok()?;
            let s = b.get(k..k.checked_add(len)?)?;
            Some((Some(short(s)), k + len))
        }
        // An unknown type cannot be sized.
        _ => None,
    }
}

fn u16_at(d: &[u8], i: usize) -> u64 {
    u64::from(d.get(i).copied().unwrap_or(0)) | u64::from(d.get(i + 1).copied().unwrap_or(0)) << 8
}

fn u32_at(d: &[u8], i: usize) -> u64 {
    u16_at(d, i) | u16_at(d, i + 2) << 16
}

fn byte(d: &[u8], i: usize) -> u8 {
    d.get(i).copied().unwrap_or(0)
}

/// DATE / DATETIME / TIMESTAMP: 0, 4, 7 or 11 bytes (year, month, day, h, m, s, µs).
fn datetime(d: &[u8]) -> String {
    let mut s = format!("{:04}-{:02}-{:02}", u16_at(d, 0), byte(d, 2), byte(d, 3));
    if d.len() >= 7 {
        s.push_str(&format!(
            " {:02}:{:02}:{:02}",
            byte(d, 4),
            byte(d, 5),
            byte(d, 6)
        ));
    }
    if d.len() >= 11 {
        s.push_str(&format!(".{:06}", u32_at(d, 7)));
    }
    s
}

/// TIME: 0, 8 or 12 bytes (negative, days, h, m, s, µs), shown as `[-]H:MM:SS[.ffffff]`.
fn time(d: &[u8]) -> String {
    let sign = if byte(d, 0) == 1 { "-" } else { "" };
    let hours = u32_at(d, 1) * 24 + u64::from(byte(d, 5));
    let mut s = format!("{sign}{hours:02}:{:02}:{:02}", byte(d, 6), byte(d, 7));
    if d.len() >= 12 {
        s.push_str(&format!(".{:06}", u32_at(d, 8)));
    }
    s
}

/// At most [`ATTR_TEXT_MAX`] characters, `…` when cut.
fn short(b: &[u8]) -> String {
    let s = lossy(b.get(..ATTR_TEXT_MAX * 4).unwrap_or(b));
    let mut t: String = s.chars().take(ATTR_TEXT_MAX).collect();
    if t.len() < s.len() || b.len() > ATTR_TEXT_MAX * 4 {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values laid out as in the binary protocol documentation's examples
    /// (`page_protocol_binary_resultset`: TIME "-120d 19:27:30.000 001", DOUBLE 35.5).
    #[test]
    fn binary_values() {
        let time = [
            0x0c, 0x01, 0x78, 0x00, 0x00, 0x00, 0x13, 0x1b, 0x1e, 0x01, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            value(&time, TYPE_TIME, false),
            Some((Some("-2899:27:30.000001".into()), 13))
        );
        let double = 35.5f64.to_le_bytes();
        assert_eq!(
            value(&double, TYPE_DOUBLE, false),
            Some((Some("35.5".into()), 8))
        );
        assert_eq!(
            value(&[0xff, 0xff], TYPE_SHORT, false),
            Some((Some("-1".into()), 2))
        );
        assert_eq!(
            value(&[0xff, 0xff], TYPE_SHORT, true),
            Some((Some("65535".into()), 2))
        );
        assert_eq!(
            value(&[4, 0xe8, 0x07, 12, 2], TYPE_DATE, false),
            Some((Some("2024-12-02".into()), 5))
        );
        // Cut short, or of a type that cannot be sized: no value.
        assert_eq!(value(&[1, 2, 3], TYPE_LONG, false), None);
        assert_eq!(value(&[1, 2, 3], 0x42, false), None);
        assert_eq!(value(&[5, b'a'], TYPE_VARCHAR, false), None);
    }

    #[test]
    fn long_names_are_cut_and_counts_beyond_the_bytes_refused() {
        let mut q = vec![1, 1, 0, 1, 0xfe, 0, 100];
        q.extend_from_slice(&[b'n'; 100]);
        q.extend_from_slice(b"\x01vSELECT 1");
        let (attrs, count, at) = query_attrs(&q).unwrap();
        assert_eq!(count, 1);
        assert_eq!(attrs[0].name.chars().count(), ATTR_TEXT_MAX + 1);
        assert!(attrs[0].name.ends_with('…'));
        assert_eq!(&q[at..], b"SELECT 1");
        // 0xfc 0xff 0xff: 65535 attributes in a few bytes.
        assert!(query_attrs(&[0xfc, 0xff, 0xff, 1, 0, 1, 0xfe, 0]).is_none());
        // parameter_set_count other than 1.
        assert!(query_attrs(&[0, 2, b'S']).is_none());
    }
}
