//! pcapng Decryption Secrets Blocks and key-log text from the fuzzer: a pcapng built of a section
//! header, an interface, then blocks chosen by the fuzzer (secrets blocks with fuzzed key-log
//! text, packets, more interfaces), run through the whole pipeline with a small budget, so that
//! the shared key table, its cap and the secrets hand-over are all reached.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proxyscope::analyze::{self, Budget, Options};
use proxyscope::report::JsonReport;
use proxyscope::source::{CaptureFile, Sources};

fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(std::iter::repeat_n(0, pad));
    out.extend_from_slice(&total.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let mut f = Vec::new();
    block(
        &mut f,
        0x0a0d_0d0a,
        &[
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    );
    block(&mut f, 1, &[1, 0, 0, 0, 0, 0, 4, 0]);
    let mut rest = data;
    while let Some((&tag, tail)) = rest.split_first() {
        let len = usize::from(tag & 0x3f).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        match tag >> 6 {
            0 | 1 => {
                // A key log line or part of one: labels, randoms and secrets from the fuzzer.
                let mut dsb = 0x544c_534bu32.to_le_bytes().to_vec();
                let text: Vec<u8> = if tag & 0x40 == 0 {
                    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
                    format!("CLIENT_RANDOM {hex} {hex}\nSERVER_TRAFFIC_SECRET_0 {hex} {hex}\n")
                        .into_bytes()
                } else {
                    body.to_vec()
                };
                dsb.extend_from_slice(&(text.len() as u32).to_le_bytes());
                dsb.extend_from_slice(&text);
                block(&mut f, 0x0a, &dsb);
            }
            2 => {
                let mut epb = vec![0u8; 20];
                epb[12..16].copy_from_slice(&(body.len() as u32).to_le_bytes());
                epb[16..20].copy_from_slice(&(body.len() as u32).to_le_bytes());
                epb.extend_from_slice(body);
                block(&mut f, 6, &epb);
            }
            _ => block(
                &mut f,
                1,
                &[body.first().copied().unwrap_or(1), 0, 0, 0, 0, 0, 4, 0],
            ),
        }
    }
    let Ok(file) = CaptureFile::from_read("fuzz", 0, Box::new(Cursor::new(f))) else {
        return;
    };
    let opts = Options {
        budget: Budget::mb(16),
        ..Options::default()
    };
    let mut report = JsonReport::new(std::io::sink());
    let _ = analyze::run(
        &mut Sources::new(vec![file]),
        &opts,
        &mut report,
        &mut |_| {},
    );
});
