//! Criterion benchmark of the whole offline pipeline (read, decode, reassemble, attribute,
//! summarise) on real captures held in memory, so it measures our code and not the disk.
//!
//! Set `PROXYSCOPE_BENCH_PCAP=FILE` to bench a large capture (scripts/bench.sh makes some);
//! by default it uses the bundled captures and the public ones in ../shared/captures.

use std::io::{self, Cursor};
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxyscope::analyze::{self, Options};
use proxyscope::model::Summary;
use proxyscope::report::{Report, RunSummary};
use proxyscope::source::{CaptureFile, Sources};

struct Null;
impl Report for Null {
    fn connection(&mut self, c: &Summary) -> io::Result<()> {
        std::hint::black_box(c);
        Ok(())
    }
    fn finish(&mut self, _: &RunSummary) -> io::Result<()> {
        Ok(())
    }
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    if let Ok(p) = std::env::var("PROXYSCOPE_BENCH_PCAP") {
        let data = std::fs::read(&p).expect("PROXYSCOPE_BENCH_PCAP readable");
        return vec![(p, data)];
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for name in [
        "../shared/captures/mysql-app-mixed.pcap",
        "captures/client-sigkill-query.pcap",
        "captures/tls13-clean-quit.pcap",
    ] {
        if let Ok(d) = std::fs::read(root.join(name)) {
            v.push((name.rsplit('/').next().unwrap_or(name).to_string(), d));
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("analyze");
    for (name, data) in inputs() {
        // Leaked once so each iteration reads the same bytes without copying them.
        let data: &'static [u8] = Box::leak(data.into_boxed_slice());
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(&name, |b| {
            b.iter(|| {
                let f = CaptureFile::from_read("bench", 0, Box::new(Cursor::new(data)))
                    .expect("a capture");
                let mut s = Sources::new(vec![f]);
                analyze::run(&mut s, &Options::default(), &mut Null, &mut |_| {}).expect("runs")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
