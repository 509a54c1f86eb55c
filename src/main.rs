//! The `proxyscope` command line: parse arguments, run the library, map the outcome to an exit
//! code (0 ran, 1 usage or unreadable input, 2 partial input).

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use proxyscope::analyze::{self, Options, Progress};
use proxyscope::diagnose::legs::{LegFlags, Legs};
use proxyscope::report::RunSummary;
use proxyscope::report::{JsonReport, Report, TextReport};
use proxyscope::source::{CaptureFile, Input, Sources};
use proxyscope::tcp;
use proxyscope::tls::decrypt::KeyLog;

#[derive(Parser)]
#[command(
    name = "proxyscope",
    version,
    about = "Who closed each MySQL connection around a proxy, how, and when — from packet captures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More diagnostics on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse capture files (pcap, pcapng, gzip-compressed, or - for stdin).
    #[command(after_help = ANALYZE_EXAMPLES)]
    Analyze(AnalyzeArgs),
    /// Say what a client's error text or number means on the wire, which verdicts produce it
    /// and what to capture next.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// Capture live from an interface (libpcap) and print each close verdict as it happens.
    #[command(after_help = LIVE_EXAMPLES)]
    Live(Box<LiveArgs>),
    /// List the interfaces a live capture can use (like tcpdump -D).
    Interfaces,
    /// Print a shell completion script to standard output.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output, or write one page per command into a
    /// directory.
    #[command(after_help = MANPAGE_EXAMPLES)]
    Manpage {
        /// Write proxyscope.1 and proxyscope-COMMAND.1 here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Run the proxy lab: a small ProxySQL-like MySQL proxy that can inject known faults and
    /// writes the ground truth of what it did.
    Lab(Box<LabArgs>),
    /// Export the events of capture files as JSON Lines, CSV, an HTML timeline or a Perfetto
    /// trace.
    #[command(after_help = TIMELINE_EXAMPLES)]
    Timeline(Box<TimelineArgs>),
}

// Examples under each command's --help: real invocations, as in the README.
const ANALYZE_EXAMPLES: &str = "\
Examples:
  proxyscope analyze proxy.pcapng
  proxyscope analyze --proxy 10.0.0.5 --keylog keys.log --only-problems app.pcap db.pcap
  proxyscope analyze --format json capture.pcap.gz > report.json
  tcpdump -w - -U -i any 'tcp port 6033 or tcp port 3306' | proxyscope analyze -q -";
const TIMELINE_EXAMPLES: &str = "\
Examples:
  proxyscope timeline --format html -o timeline.html proxy.pcapng
  proxyscope timeline --format perfetto -o trace.json --only-problems proxy.pcapng
  proxyscope timeline --format jsonl --conn 3 --since 10 --until 12 proxy.pcapng
  proxyscope timeline --format csv --leg backend -o backend.csv proxy.pcapng";
const LIVE_EXAMPLES: &str = "\
Examples:
  sudo proxyscope live -i any --bpf 'tcp port 6033 or tcp port 3306'
  sudo proxyscope live -i eth0 --only-problems --duration 3600 -w /var/tmp/px.pcap -C 100 -W 10
  sudo proxyscope live -i lo --format jsonl --verdicts-only --keylog /tmp/keys.log
Needs CAP_NET_RAW: root, or `sudo setcap cap_net_raw,cap_net_admin=eip $(command -v proxyscope)`;
capabilities are dropped once the device is open.";
const EXPLAIN_EXAMPLES: &str = "\
Examples:
  proxyscope explain \"Lost connection to MySQL server during query\"
  proxyscope explain \"(2026, 'TLS/SSL error: Success (0)')\"
  proxyscope explain 2013
  proxyscope explain --list --format json";
const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  proxyscope completions bash > ~/.local/share/bash-completion/completions/proxyscope
  proxyscope completions zsh > ~/.zfunc/_proxyscope
  proxyscope completions fish > ~/.config/fish/completions/proxyscope.fish";
const MANPAGE_EXAMPLES: &str = "\
Examples:
  proxyscope manpage | man -l -
  proxyscope manpage --dir /usr/local/share/man/man1";

#[derive(clap::Args)]
struct ExplainArgs {
    /// The error text (several words are joined with spaces), an error number or its name, e.g.
    /// "(2026, 'TLS/SSL error: Success (0)')", 2013, CR_SERVER_LOST.
    #[arg(
        value_name = "TEXT",
        required_unless_present = "list",
        conflicts_with = "list"
    )]
    text: Vec<String>,
    /// Print every known error and every known error number.
    #[arg(long)]
    list: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    format: ExplainFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExplainFormat {
    /// Readable text.
    Text,
    /// One JSON document (schema proxyscope.explain/1).
    Json,
}

#[derive(clap::Args)]
struct TimelineArgs {
    /// Capture files; several are merged in timestamp order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Output format.
    #[arg(long, value_enum)]
    format: proxyscope::export::Format,
    /// Write here instead of to standard output.
    #[arg(short, long, value_name = "OUT")]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    filter: proxyscope::export::Filter,
    #[command(flatten)]
    legs: LegArgs,
    /// Events kept per connection from its start, and as many from its end (the rest are
    /// counted as omitted). At most 65536: the memory budget is split by it.
    #[arg(long, value_name = "N", default_value_t = proxyscope::export::KEEP_EVENTS,
          value_parser = max_events)]
    events: usize,
}

/// Leg labels and TLS keys, shared by the commands that read captures.
#[derive(clap::Args)]
struct LegArgs {
    /// Server port of frontend connections (application → proxy); repeatable.
    #[arg(long, value_name = "PORT")]
    frontend_port: Vec<u16>,
    /// Server port of backend connections (proxy → MySQL); repeatable.
    #[arg(long, value_name = "PORT")]
    backend_port: Vec<u16>,
    /// The proxy's address: connections to it are frontend, from it backend.
    #[arg(long, value_name = "IP")]
    proxy: Option<std::net::IpAddr>,
    /// TLS key log (NSS SSLKEYLOGFILE format) to decrypt sessions with; repeatable. Secrets in
    /// pcapng Decryption Secrets Blocks are used too.
    #[arg(long, value_name = "FILE")]
    keylog: Vec<String>,
    /// Memory budget in MB for the analysis state (tracked connections, out-of-order bytes,
    /// decoder buffers, TLS secrets, text-report rows); what does not fit is counted in the
    /// summary's `dropped`.
    #[arg(long, value_name = "MB", default_value_t = analyze::DEFAULT_MEMORY_MB as u64,
          value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    memory: u64,
}

impl LegArgs {
    fn flags(&self) -> LegFlags {
        LegFlags {
            frontend_ports: self.frontend_port.clone(),
            backend_ports: self.backend_port.clone(),
            proxy: self.proxy,
        }
    }
}

#[derive(clap::Args)]
struct LabArgs {
    /// Frontend address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6033")]
    listen: String,
    /// Backend MySQL server.
    #[arg(long, value_name = "HOST:PORT")]
    backend: String,
    /// Backend user.
    #[arg(long, value_name = "USER")]
    backend_user: String,
    /// Backend password.
    #[arg(long, value_name = "PASSWORD", default_value = "")]
    backend_password: String,
    /// TLS to the backend (needs --backend-ca).
    #[arg(long, requires = "backend_ca")]
    backend_tls: bool,
    /// CA certificate (PEM) the backend's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "backend_tls")]
    backend_ca: Option<std::path::PathBuf>,
    /// Frontend TLS certificate chain (PEM); with --key, clients may ask for TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// Frontend TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Write TLS secrets of both legs here (NSS key log format).
    #[arg(long, value_name = "FILE")]
    keylog: Option<std::path::PathBuf>,
    /// Write the ground truth here (JSON Lines, one event a line).
    #[arg(long, value_name = "FILE")]
    ground_truth: Option<std::path::PathBuf>,
    /// Inject a fault (repeatable): dirty-ssl, plaintext-quit, err-then-close, max-age,
    /// drop-burst, wait-timeout, connect-timeout.
    #[arg(long, value_name = "FAULT")]
    fault: Vec<proxyscope::lab::Fault>,
    /// Period of plaintext-quit, err-then-close and drop-burst, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 700)]
    fault_interval_ms: u64,
    /// Backend age at which --fault max-age closes it, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    backend_max_age_ms: u64,
    /// Session wait_timeout (seconds) for backend connections (--fault wait-timeout: 1).
    #[arg(long, value_name = "SECS")]
    backend_wait_timeout: Option<u32>,
    /// How long --fault connect-timeout waits for a client's first packet, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    connect_timeout_ms: u64,
    /// --fault dirty-ssl: re-send a broken query on a new backend this many times before the
    /// frontend is closed (ProxySQL's mysql-query_retries_on_failure).
    #[arg(long, value_name = "N", default_value_t = 0)]
    dirty_ssl_retries: u32,
    /// --fault dirty-ssl: break backends with fin, rst or alternate.
    #[arg(long, value_name = "HOW", default_value = "fin")]
    dirty_ssl_break: proxyscope::lab::BreakWith,
    /// Ping idle pooled backends this often, in milliseconds (0: never); with --fault dirty-ssl
    /// a trigger that finds no request in flight breaks the next ping.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    ping_interval_ms: u64,
    /// Leave CLIENT_SSL out of the frontend greeting (mysql-have_ssl=false) but still answer an
    /// SSLRequest with TLS, as ProxySQL 2.6.3 does.
    #[arg(long)]
    no_tls_offer: bool,
    /// Frontend TLS 1.2 only (the backend leg keeps 1.3).
    #[arg(long)]
    frontend_tls12: bool,
    /// Stop after this many seconds (default: at SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = proxyscope::time::parse_secs)]
    duration: Option<f64>,
}

#[derive(Clone, Copy, ValueEnum)]
#[cfg_attr(not(feature = "live"), allow(dead_code))]
enum LiveFormat {
    /// A row per close as it happens, incident blocks, a summary at the end.
    Text,
    /// JSON Lines: every event, a verdict.close line per close, verdict.incident lines, and a
    /// live.summary line at the end.
    Jsonl,
}

// Parsed in every build (same --help, completions and man page); used only with `live`.
#[derive(clap::Args)]
#[cfg_attr(not(feature = "live"), allow(dead_code))]
struct LiveArgs {
    /// Interface to capture on (`any` for all; `proxyscope interfaces` lists them).
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: String,
    /// BPF capture filter (tcpdump syntax).
    #[arg(long, value_name = "EXPR", default_value = "tcp")]
    bpf: String,
    /// Bytes kept of each packet (the default keeps whole TLS records and loopback segments).
    #[arg(long, value_name = "BYTES", default_value_t = 262_144)]
    snaplen: i32,
    /// Kernel capture buffer, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    buffer_size: i32,
    /// libpcap's immediate mode (each packet delivered at once). Off by default: on Linux it
    /// gives one fixed-size ring slot per packet, and on loopback the kernel buffer then
    /// overflows under load; buffered blocks come at most 100 ms late (see README).
    #[arg(long)]
    immediate: bool,
    /// Put the interface in promiscuous mode (off by default: the proxy host's own traffic is
    /// what matters).
    #[arg(long)]
    promisc: bool,
    /// Save the packets seen to this pcap file (nanosecond timestamps), to open in Wireshark or
    /// re-analyse offline with identical results.
    #[arg(short = 'w', long, value_name = "FILE")]
    write: Option<std::path::PathBuf>,
    /// Start a new file when the current one reaches this many MB (like tcpdump -C): FILE,
    /// then FILE's name with .1, .2, ... before its extension.
    #[arg(short = 'C', long, value_name = "MB")]
    rotate_size: Option<u64>,
    /// Start a new file every this many seconds of packets (like tcpdump -G).
    #[arg(short = 'G', long, value_name = "SECS")]
    rotate_seconds: Option<u64>,
    /// With rotation, keep at most this many files, overwriting the oldest (like tcpdump -W).
    #[arg(short = 'W', long, value_name = "N")]
    rotate_count: Option<u32>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = proxyscope::time::parse_secs)]
    duration: Option<f64>,
    /// Stop after this many packets.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: LiveFormat,
    /// Text: list only connections whose close is a problem.
    #[arg(long)]
    only_problems: bool,
    /// JSON Lines: only verdict, incident and summary lines, no per-event lines.
    #[arg(long)]
    verdicts_only: bool,
    /// Expire connections silent for this many seconds (bounded memory over hours).
    #[arg(long, value_name = "SECS", default_value_t = 900.0, value_parser = proxyscope::time::parse_secs)]
    idle_timeout: f64,
    /// Keep a closed connection this many seconds for late packets before its verdict is
    /// printed.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = proxyscope::time::parse_secs)]
    linger: f64,
    /// Out-of-order bytes buffered per direction before the missing bytes are declared a gap.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_buffer: usize,
    /// Closes on the two legs of a proxy within this many milliseconds are one incident.
    #[arg(long, value_name = "MS", default_value_t = 5.0, value_parser = proxyscope::time::parse_secs)]
    link_window_ms: f64,
    #[command(flatten)]
    legs: LegArgs,
    /// Keep the process's capabilities after opening the device (by default all are dropped).
    #[arg(long)]
    keep_privileges: bool,
    /// Started as root: the user to switch to once the device is open (default nobody; `root`
    /// stays uid 0, still without capabilities). Rotated --write files are created as this
    /// user, like tcpdump -Z.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A table, one row per connection, then a summary.
    Text,
    /// One JSON document (schema proxyscope.analyze/1).
    Json,
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    /// Capture files; several are merged in timestamp order.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Finish connections silent for this many seconds (default: keep them until the end).
    #[arg(long, value_name = "SECS", value_parser = proxyscope::time::parse_secs)]
    idle_timeout: Option<f64>,
    /// Out-of-order bytes buffered per direction before the missing bytes are declared a gap.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_buffer: usize,
    /// A ProxySQL error log: its "Detected a broken connection ... (HG,HOST,PORT,THREAD_ID)"
    /// lines are matched to the backend connections whose greeting carried that thread id.
    #[arg(long, value_name = "FILE")]
    proxysql_log: Vec<String>,
    /// Closes on the two legs of a proxy within this many milliseconds are one incident.
    #[arg(long, value_name = "MS", default_value_t = 5.0, value_parser = proxyscope::time::parse_secs)]
    link_window_ms: f64,
    /// List only connections whose close is a problem (clean ones are counted).
    #[arg(long)]
    only_problems: bool,
    #[command(flatten)]
    legs: LegArgs,
    /// Write, per incident, a pcap of the packets of the connections involved into this
    /// directory (a second pass over the files).
    #[arg(long, value_name = "DIR")]
    write_incident: Option<std::path::PathBuf>,
    /// Events kept per connection from its start, and as many from its end (JSON `events`). At
    /// most 65536: the memory budget is split by it.
    #[arg(long, value_name = "N", default_value_t = proxyscope::dissect::KEEP_EVENTS,
          value_parser = max_events)]
    events: usize,
    /// No progress line on stderr.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: 2 means a capture that stopped early.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // clap prints help and version to stdout, errors to stderr.
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            };
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .without_time()
        .init();
    match cli.command {
        Command::Lab(args) => match lab_cmd(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("proxyscope lab: {e:#}");
                ExitCode::from(1)
            }
        },
        #[cfg(feature = "live")]
        Command::Live(args) => match live_cmd(*args) {
            Ok(code) => code,
            Err(e) => {
                if is_broken_pipe(&e) {
                    return ExitCode::SUCCESS;
                }
                eprintln!("proxyscope live: {e:#}");
                ExitCode::from(1)
            }
        },
        #[cfg(not(feature = "live"))]
        Command::Live(_) => without_live("live"),
        #[cfg(not(feature = "live"))]
        Command::Interfaces => without_live("interfaces"),
        Command::Completions { shell } => {
            let mut out = io::stdout().lock();
            clap_complete::generate(shell, &mut Cli::command(), "proxyscope", &mut out);
            ExitCode::SUCCESS
        }
        Command::Manpage { dir } => edge(manpage_cmd(dir)),
        #[cfg(feature = "live")]
        Command::Interfaces => match proxyscope::live::interfaces() {
            Ok(list) => {
                for (n, d) in list.iter().enumerate() {
                    let desc = d
                        .desc
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default();
                    println!("{}.{}{desc} [{}]", n + 1, d.name, d.flags.join(", "));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("proxyscope interfaces: {e}");
                ExitCode::from(1)
            }
        },
        Command::Explain(args) => edge(explain_cmd(args)),
        Command::Analyze(args) => edge(analyze_cmd(args)),
        Command::Timeline(args) => edge(timeline_cmd(*args)),
    }
}

/// `live` and `interfaces` in a build without libpcap: say so, exit 1 (a usage error).
#[cfg(not(feature = "live"))]
fn without_live(cmd: &str) -> ExitCode {
    eprintln!(
        "proxyscope {cmd}: this proxyscope was built without live capture (the `live` cargo \
         feature, which needs libpcap); capture with tcpdump and run `proxyscope analyze`, or \
         rebuild with default features"
    );
    ExitCode::from(1)
}

/// `manpage`: proxyscope(1) on stdout, or every page into `dir`.
fn manpage_cmd(dir: Option<std::path::PathBuf>) -> Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("{}: cannot write man pages", dir.display()))?;
        }
        None => {
            let mut out = io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `explain`: the entries the text matches, or all of them with `--list`; exit 1 when nothing
/// matched (as grep), with a hint on stderr.
fn explain_cmd(args: ExplainArgs) -> Result<ExitCode> {
    use proxyscope::diagnose::explain::{self, Explanation, Match, CODES, KNOWN};
    let mut out = io::BufWriter::new(io::stdout().lock());
    let json = args.format == ExplainFormat::Json;
    if args.list {
        if json {
            let doc = serde_json::json!({
                "schema": "proxyscope.explain/1",
                "codes": CODES,
                "entries": KNOWN,
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        } else {
            writeln!(out, "Error numbers:")?;
            for c in CODES {
                write_code(&mut out, c)?;
            }
            writeln!(out, "\nKnown errors ({}):", KNOWN.len())?;
            for e in KNOWN {
                writeln!(out)?;
                write_entry(&mut out, e, None)?;
            }
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = args.text.join(" ");
    let codes = explain::codes_in(&text);
    let found: Vec<Match> = explain::explain(&text);
    if json {
        let doc = serde_json::json!({
            "schema": "proxyscope.explain/1",
            "query": text,
            "codes": codes,
            "matches": found,
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for c in &codes {
            write_code(&mut out, c)?;
        }
        for m in &found {
            writeln!(out)?;
            write_entry(&mut out, m.entry, m.matched)?;
        }
    }
    out.flush()?;
    if found.is_empty() {
        eprintln!(
            "proxyscope explain: no known client error in that text; `proxyscope explain --list` \
             shows what is known"
        );
        return Ok(ExitCode::from(1));
    }
    return Ok(ExitCode::SUCCESS);

    fn write_code(out: &mut impl Write, c: &explain::ErrorCode) -> io::Result<()> {
        writeln!(
            out,
            "{:<5} {:<30} {:<9} {}",
            c.code,
            c.name.unwrap_or("-"),
            c.origin.as_str(),
            c.text
        )
    }

    fn write_entry(out: &mut impl Write, e: &Explanation, matched: Option<&str>) -> io::Result<()> {
        writeln!(out, "{}: {}", e.id, e.title)?;
        if let Some(p) = matched {
            field(out, "matched", &format!("\"{p}\""))?;
        }
        if !e.codes.is_empty() {
            let codes: Vec<String> = e
                .codes
                .iter()
                .map(|n| match explain::code(*n).and_then(|c| c.name) {
                    Some(name) => format!("{n} {name}"),
                    None => n.to_string(),
                })
                .collect();
            field(out, "codes", &codes.join(", "))?;
        }
        field(out, "reported by", e.reported_by)?;
        field(out, "on the wire", e.on_the_wire)?;
        let verdicts: Vec<&str> = e.verdicts.iter().map(|l| l.as_str()).collect();
        field(
            out,
            "verdicts",
            if verdicts.is_empty() {
                "none (nothing on the MySQL wire shows it)".to_string()
            } else {
                verdicts.join(", ")
            }
            .as_str(),
        )?;
        field(out, "capture next", e.capture_next)
    }

    /// `  name:  text`, the text wrapped at 100 columns under itself.
    fn field(out: &mut impl Write, name: &str, text: &str) -> io::Result<()> {
        const INDENT: usize = 16;
        const WIDTH: usize = 100;
        let mut line = format!("  {:<w$}", format!("{name}:"), w = INDENT - 2);
        let mut len = INDENT;
        let mut first = true;
        for word in text.split_whitespace() {
            let n = word.chars().count();
            if !first && len + 1 + n > WIDTH {
                writeln!(out, "{line}")?;
                line = " ".repeat(INDENT);
                len = INDENT;
                first = true;
            }
            if !first {
                line.push(' ');
                len += 1;
            }
            line.push_str(word);
            len += n;
            first = false;
        }
        writeln!(out, "{line}")
    }
}

/// The exit code of a command's outcome; errors go to stderr (a closed pipe is not one).
fn edge(r: Result<ExitCode>) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("proxyscope: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `--events`: a count the budget can hold (each kept event costs every tracked connection).
fn max_events(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= 65_536 => Ok(n),
        Ok(_) => Err(format!("{s} is more than 65536")),
        Err(_) => Err(format!("{s:?} is not a count")),
    }
}

#[cfg(feature = "live")]
fn secs_to_ns(s: f64) -> i64 {
    (s * 1e9).clamp(0.0, i64::MAX as f64) as i64
}

#[cfg(feature = "live")]
fn live_cmd(args: LiveArgs) -> Result<ExitCode> {
    use proxyscope::live::{self, DeviceOptions, LiveOptions, Rotation};
    let opts = LiveOptions {
        device: DeviceOptions {
            iface: args.interface.clone(),
            snaplen: args.snaplen.max(96),
            buffer_size: args.buffer_size.clamp(1, 2047).saturating_mul(1 << 20),
            promisc: args.promisc,
            bpf: args.bpf.clone(),
            immediate: args.immediate,
        },
        analysis: Options {
            tcp: tcp::Config {
                max_buffer: args.max_buffer,
                idle_timeout: Some(secs_to_ns(args.idle_timeout)),
                linger: secs_to_ns(args.linger),
                ..tcp::Config::default()
            },
            budget: analyze::Budget::mb(args.legs.memory as usize),
            keylog: read_keylogs(&args.legs.keylog)?,
            link_window_ns: (args.link_window_ms * 1e6).clamp(0.0, 1e12) as i64,
            ..Options::default()
        },
        leg_flags: args.legs.flags(),
        format: match args.format {
            LiveFormat::Text => live::LiveFormat::Text,
            LiveFormat::Jsonl => live::LiveFormat::Jsonl,
        },
        only_problems: args.only_problems,
        verdicts_only: args.verdicts_only,
        write: args.write.clone(),
        rotation: Rotation {
            size: args.rotate_size.map(|mb| mb.saturating_mul(1_000_000)),
            seconds: args.rotate_seconds,
            count: args.rotate_count,
        },
        duration: args
            .duration
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))),
        count: args.count,
        drop_privileges: !args.keep_privileges,
        user: match (&args.user, live::device::is_root()) {
            _ if args.keep_privileges => None,
            (Some(u), true) if u == "root" || u == "0" => None,
            (Some(u), true) => Some(live::device::account(u)?),
            (None, true) => Some(live::device::account("nobody")?),
            (Some(_), false) => anyhow::bail!("--user needs live to be started as root"),
            (None, false) => None,
        },
    };
    let stdout = io::stdout().lock();
    // Text is for a terminal: strings from the capture are neutralised; JSON Lines stay exact.
    let mut out: Box<dyn Write> = match opts.format {
        live::LiveFormat::Text => Box::new(proxyscope::report::TermSafe::new(stdout)),
        live::LiveFormat::Jsonl => Box::new(stdout),
    };
    let summary = match live::run_blocking(&opts, &mut out) {
        Ok(s) => s,
        // The reader went away (`| head`): a normal way to stop.
        Err(live::LiveError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(c) = summary.capture {
        if c.dropped > 0 || c.if_dropped > 0 {
            eprintln!(
                "proxyscope live: {} packets dropped by the kernel, {} by the interface: \
                 verdicts may lack evidence (a larger --buffer-size or a narrower --bpf helps)",
                c.dropped, c.if_dropped
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lab_cmd(args: LabArgs) -> Result<()> {
    let cfg = proxyscope::lab::Config {
        listen: args.listen,
        backend: args.backend,
        backend_user: args.backend_user,
        backend_password: args.backend_password,
        backend_ca: args.backend_ca.filter(|_| args.backend_tls),
        tls: args.cert.zip(args.key),
        keylog: args.keylog,
        ground_truth: args.ground_truth,
        faults: args.fault,
        duration: args
            .duration
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))),
        hostgroup: 0,
        fault_interval: Duration::from_millis(args.fault_interval_ms.max(1)),
        backend_max_age: Duration::from_millis(args.backend_max_age_ms),
        backend_wait_timeout: args.backend_wait_timeout,
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        dirty_ssl_retries: args.dirty_ssl_retries,
        break_with: args.dirty_ssl_break,
        ping_interval: (args.ping_interval_ms > 0)
            .then(|| Duration::from_millis(args.ping_interval_ms)),
        no_tls_offer: args.no_tls_offer,
        frontend_tls12: args.frontend_tls12,
    };
    proxyscope::lab::run_blocking(cfg)?;
    Ok(())
}

/// Reads the key log files named on the command line (None when there are none).
fn read_keylogs(paths: &[String]) -> Result<Option<KeyLog>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut log = KeyLog::default();
    for p in paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("{p}: cannot read key log"))?;
        if log.add_text(&text) == 0 {
            eprintln!("proxyscope: {p}: no TLS secrets found in this key log");
        }
    }
    Ok(Some(log))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Prepares the inputs (a stream is read once and spooled for the second pass), saying on
/// stderr which cannot be opened: the inputs, and whether any could not.
fn prepare(paths: &[String]) -> (Vec<Input>, Unreadable) {
    let mut inputs = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        match Input::new(path) {
            Ok(i) => inputs.push(i),
            Err(e) => {
                eprintln!("proxyscope: {e}");
                unreadable.push((path.clone(), e.to_string()));
            }
        }
    }
    (inputs, unreadable)
}

/// Inputs that could not be opened: (path as given, reason).
type Unreadable = Vec<(String, String)>;

/// Opens the inputs for the analysis, saying on stderr which cannot be.
fn open_all(inputs: &[Input], unreadable: &mut Unreadable) -> Vec<CaptureFile> {
    let mut files = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        match input.open(i) {
            Ok(f) => files.push(f),
            Err(e) => {
                eprintln!("proxyscope: {e}");
                unreadable.push((input.path().to_string(), e.to_string()));
            }
        }
    }
    files
}

fn timeline_cmd(args: TimelineArgs) -> Result<ExitCode> {
    let (inputs, mut unreadable) = prepare(&args.files);
    if inputs.is_empty() {
        return Ok(ExitCode::from(1));
    }
    let mut opts = Options {
        keep_events: args.events,
        keylog: read_keylogs(&args.legs.keylog)?,
        budget: analyze::Budget::mb(args.legs.memory as usize),
        ..Options::default()
    };
    opts.legs = analyze::find_legs(&inputs, args.legs.flags(), &opts)?;
    let files = open_all(&inputs, &mut unreadable);
    if files.is_empty() {
        return Ok(ExitCode::from(1));
    }
    let mut tl = proxyscope::export::Timeline::new(args.filter);
    let run = analyze::run(&mut Sources::new(files), &opts, &mut tl, &mut |_| {})?;
    let title: Vec<String> = args
        .files
        .iter()
        .map(|f| {
            let p = std::path::Path::new(f);
            p.file_name()
                .map_or(f.clone(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    match &args.output {
        // Written under a temporary name and renamed when complete: never through a planted
        // link, never half a file.
        Some(p) => {
            let mut out = proxyscope::outfile::Atomic::create(p)?;
            proxyscope::export::write(&tl, args.format, &title.join(", "), &mut out)?;
            out.commit()?;
        }
        None => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            proxyscope::export::write(&tl, args.format, &title.join(", "), &mut out)?;
            out.flush()?;
        }
    }
    Ok(outcome(&run, !unreadable.is_empty()))
}

fn analyze_cmd(args: AnalyzeArgs) -> Result<ExitCode> {
    let (inputs, mut unreadable) = prepare(&args.files);
    if inputs.is_empty() {
        return Ok(ExitCode::from(1));
    }
    if let Some(i) = inputs.iter().find(|i| !i.rereadable()) {
        if args.write_incident.is_some() {
            anyhow::bail!(
                "{}: --write-incident reads the files again after the analysis: it needs \
                 regular files, not a pipe or standard input",
                i.path()
            );
        }
    }
    let mut opts = Options {
        tcp: tcp::Config {
            max_buffer: args.max_buffer,
            idle_timeout: args
                .idle_timeout
                .map(|s| (s * 1e9).clamp(0.0, i64::MAX as f64) as i64),
            ..tcp::Config::default()
        },
        keep_events: args.events,
        keylog: read_keylogs(&args.legs.keylog)?,
        legs: Legs::default(),
        link_window_ns: (args.link_window_ms * 1e6).clamp(0.0, 1e12) as i64,
        max_frames: None,
        budget: analyze::Budget::mb(args.legs.memory as usize),
        proxysql_log: {
            let mut log = proxyscope::diagnose::proxysql_log::ProxysqlLog::default();
            for p in &args.proxysql_log {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("{p}: cannot read the ProxySQL log"))?;
                log.extend(proxyscope::diagnose::proxysql_log::ProxysqlLog::parse(
                    &text,
                ));
            }
            log
        },
    };
    opts.legs = analyze::find_legs(&inputs, args.legs.flags(), &opts)?;
    let files = open_all(&inputs, &mut unreadable);
    if files.is_empty() {
        return Ok(ExitCode::from(1));
    }
    let mut sources = Sources::new(files);
    // On a terminal, stdout stays line-buffered so that whole rows overwrite the progress line;
    // otherwise a large buffer.
    let on_terminal = io::stdout().is_terminal();
    let out: Box<dyn Write> = if on_terminal {
        Box::new(io::stdout().lock())
    } else {
        Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout().lock()))
    };
    let mut report: Box<dyn Report> = match args.format {
        Format::Text => Box::new(
            TextReport::new(proxyscope::report::TermSafe::new(out))
                .only_problems(args.only_problems)
                .max_rows(opts.budget.report_rows()),
        ),
        Format::Json => Box::new(JsonReport::new(out).with_unreadable(unreadable.clone())),
    };
    // As the design says: progress only where a person watches both streams.
    let show = !args.quiet && on_terminal && io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = Instant::now();
    let mut progress = |p: Progress| {
        if show && p.done {
            eprint!("\r\x1b[K");
        } else if show && last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            let mb = p.bytes as f64 / 1e6;
            let rate = mb / started.elapsed().as_secs_f64().max(1e-9);
            // Ends at column 0: the next report row (always longer) overwrites it.
            eprint!(
                "\x1b[K{mb:.0} MB, {} frames, {} open connections, {rate:.0} MB/s\r",
                p.frames, p.open
            );
            let _ = io::stderr().flush();
        }
    };
    let mut incident_keys = Default::default();
    // The keys of incident connections are recorded only when their packets are to be written.
    let run = if args.write_incident.is_some() {
        let mut keys = proxyscope::export::pcap::KeyRecorder {
            inner: report.as_mut(),
            keys: Default::default(),
            order: Default::default(),
        };
        let run = analyze::run(&mut sources, &opts, &mut keys, &mut progress)?;
        incident_keys = keys.keys;
        run
    } else {
        analyze::run(&mut sources, &opts, report.as_mut(), &mut progress)?
    };
    if let Some(dir) = &args.write_incident {
        let readable: Vec<String> = args
            .files
            .iter()
            .filter(|p| CaptureFile::open(p, 0).is_ok())
            .cloned()
            .collect();
        let written = proxyscope::export::pcap::write_incidents(
            &readable,
            &run.incidents,
            &incident_keys,
            dir,
        )?;
        for w in &written {
            eprintln!(
                "proxyscope: incident {}: {} ({} frames)",
                w.incident,
                w.path.display(),
                w.frames
            );
        }
    }
    Ok(outcome(&run, !unreadable.is_empty()))
}

/// Says on stderr where input broke off or was skipped; the exit code: 1 when a file could
/// not be read, 2 when one stopped early, else 0.
fn outcome(run: &RunSummary, unreadable: bool) -> ExitCode {
    let mut partial = false;
    for f in &run.files {
        if let Some(stop) = &f.stop {
            eprintln!(
                "proxyscope: {}: {stop}; everything before it was analysed",
                f.path
            );
            partial = true;
        }
        if f.undeclared_interface > 0 {
            eprintln!(
                "proxyscope: {}: {} packets name an undeclared interface (skipped)",
                f.path, f.undeclared_interface
            );
        }
    }
    for (reason, n) in &run.skipped {
        if reason.starts_with("unsupported link type") {
            eprintln!("proxyscope: {n} frames skipped: {reason}");
        }
    }
    if unreadable {
        ExitCode::from(1)
    } else if partial {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
