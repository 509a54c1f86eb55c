//! Bad input is normal input: thousands of mutated real captures (bit flips, cuts, spliced and
//! deleted stretches) go through the whole pipeline. Nothing may panic, and whatever was read
//! must be accounted for.

mod common;

use std::io::Cursor;
use std::path::PathBuf;

use common::*;
use proxyscope::analyze::{self, Options};
use proxyscope::source::{CaptureFile, Sources};
use proxyscope::tcp;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 => {
                for _ in 0..=rng.below(16) {
                    let i = rng.below(d.len());
                    if let Some(b) = d.get_mut(i) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
            1 => d.truncate(rng.below(d.len() + 1)),
            2 => {
                let i = rng.below(d.len());
                let n = rng.below(64).min(d.len() - i.min(d.len()));
                d.drain(i..i + n);
            }
            3 => {
                let i = rng.below(d.len());
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                d.splice(i..i, junk);
            }
            _ => {
                // A plausible-looking but wrong length field somewhere.
                let i = rng.below(d.len().saturating_sub(4));
                if let Some(w) = d.get_mut(i..i + 4) {
                    w.copy_from_slice(&(rng.next() as u32).to_le_bytes());
                }
            }
        }
    }
    d
}

fn all_captures() -> Vec<PathBuf> {
    let mut v = captures_in(&repo().join("captures"));
    if let Some(dir) = shared_captures() {
        v.extend(captures_in(&dir));
    }
    v
}

#[test]
fn mutated_captures_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let opts = Options {
        tcp: tcp::Config {
            max_buffer: 4096,
            idle_timeout: Some(1_000_000_000),
            ..tcp::Config::default()
        },
        keep_events: 4,
        keylog: None,
        ..Options::default()
    };
    let mut runs = 0;
    for path in all_captures() {
        let data = std::fs::read(&path).unwrap();
        for _ in 0..150 {
            let m = mutate(&mut rng, &data);
            let Ok(f) = CaptureFile::from_read("mutant", 0, Box::new(Cursor::new(m))) else {
                continue;
            };
            let mut sources = Sources::new(vec![f]);
            let mut c = Collect::default();
            let run = analyze::run(&mut sources, &opts, &mut c, &mut |_| {}).unwrap();
            // Every frame read is either a TCP segment or a counted skip.
            let skipped: u64 = run.skipped.values().sum();
            assert_eq!(run.frames, run.tcp.segments + skipped, "{}", path.display());
            assert_eq!(c.0.len() as u64, run.tcp.connections);
            runs += 1;
        }
    }
    assert!(runs > 1000, "only {runs} mutants opened");
}

#[test]
fn random_bytes_after_a_valid_header_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..300 {
        let mut d = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0,
        ];
        let lt = [0u32, 1, 101, 113, 276, 228, 229, 108, 9999][rng.below(9)];
        d.extend_from_slice(&lt.to_le_bytes());
        for _ in 0..rng.below(40) {
            let len = rng.below(120) as u32;
            d.extend_from_slice(&[0; 8]);
            d.extend_from_slice(&len.to_le_bytes());
            d.extend_from_slice(&(len + rng.below(3) as u32).to_le_bytes());
            d.extend((0..len).map(|_| rng.next() as u8));
        }
        let f = CaptureFile::from_read("random", 0, Box::new(Cursor::new(d))).unwrap();
        let mut sources = Sources::new(vec![f]);
        let mut c = Collect::default();
        analyze::run(&mut sources, &Options::default(), &mut c, &mut |_| {}).unwrap();
    }
}
