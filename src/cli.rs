//! The command line: clap's types for every command (also what completions and the man page
//! are generated from), and their conversion into the library's settings.

#[cfg(feature = "live")]
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use proxyscope::analyze::{self, Options};
use proxyscope::app::{
    AnalyzeCommand, CompareCommand, ExplainCommand, ReportFormat, TimelineCommand, Tty,
};
use proxyscope::diagnose::legs::LegFlags;
use proxyscope::tcp;

#[derive(Parser)]
#[command(
    name = "proxyscope",
    version,
    about = "Who closed each MySQL connection around a proxy, how, and when — from packet captures"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// More diagnostics on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Analyse capture files (pcap, pcapng, gzip-compressed, or - for stdin).
    #[command(after_help = ANALYZE_EXAMPLES)]
    Analyze(Box<AnalyzeArgs>),
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
    #[command(disable_help_flag = true)]
    Lab {
        /// The arguments of `proxyscope-lab` (`proxyscope lab --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Export the events of capture files as JSON Lines, CSV, an HTML timeline or a Perfetto
    /// trace.
    #[command(after_help = TIMELINE_EXAMPLES)]
    Timeline(Box<TimelineArgs>),
    /// Compare two capture sets, before and after a change: incidents, closes, client errors,
    /// backend churn and latency, per hour and per 1,000 requests, each change tested against
    /// chance (exit 3 when an incident signature got worse).
    #[command(after_help = COMPARE_EXAMPLES)]
    Compare(Box<CompareArgs>),
}

// Examples under each command's --help: real invocations, as in the README.
const ANALYZE_EXAMPLES: &str = "\
Examples:
  proxyscope analyze proxy.pcapng
  proxyscope analyze --proxy 10.0.0.5 --keylog keys.log --only-problems app.pcap db.pcap
  proxyscope analyze --format json capture.pcap.gz > report.json
  proxyscope -v analyze -r app.pcap -r db.pcap
  tcpdump -w - -U -i any 'tcp port 6033 or tcp port 3306' | proxyscope analyze -q -
A progress bar (bytes, percentage, rate, ETA) is shown on stderr when it is a terminal; -q hides it.";
const TIMELINE_EXAMPLES: &str = "\
Examples:
  proxyscope timeline --format html -o timeline.html proxy.pcapng
  proxyscope timeline --format perfetto -o trace.json --only-problems proxy.pcapng
  proxyscope timeline --format jsonl --conn 3 --since 10 --until 12 proxy.pcapng
  proxyscope timeline --format csv --leg backend -o backend.csv proxy.pcapng";
const LIVE_EXAMPLES: &str = "\
Examples:
  sudo proxyscope live -i any tcp port 6033 or tcp port 3306
  sudo proxyscope live -i 2 -s 512 -B 65536 -f 'tcp port 3306'
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
const COMPARE_EXAMPLES: &str = "\
Examples:
  proxyscope compare --keylog keys.log bug_tls_stream/ -- fixed_v264_tls_stream/
  proxyscope compare --format json before-*.pcap -- after-*.pcap > compare.json
  proxyscope compare --format html 2.6.3/ -- 2.6.4/ > compare.html
  proxyscope compare --proxy 10.0.0.5 monday.pcap.gz -- tuesday.pcap.gz
Options go before `--`: everything after it is AFTER's files.
Exit codes (a rollout gate): 0 no incident signature got worse, 3 one did, 1 unreadable input,
2 partial input.";
const MANPAGE_EXAMPLES: &str = "\
Examples:
  proxyscope manpage | man -l -
  proxyscope manpage --dir /usr/local/share/man/man1";

#[derive(clap::Args)]
pub(crate) struct ExplainArgs {
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
pub(crate) enum ExplainFormat {
    /// Readable text.
    Text,
    /// One JSON document (schema proxyscope.explain/1).
    Json,
}

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
    /// Capture files (or directories of them) before the change.
    #[arg(required = true, value_name = "BEFORE")]
    before: Vec<String>,
    /// Capture files (or directories of them) after the change: everything after `--`.
    #[arg(last = true, required = true, value_name = "AFTER")]
    after: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CompareFormat::Text)]
    format: CompareFormat,
    #[command(flatten)]
    legs: LegArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompareFormat {
    /// Verdict lines, then the counts and rates side by side.
    Text,
    /// One JSON document (schema proxyscope.compare/1).
    Json,
    /// One self-contained HTML page: the verdicts, both sets' closes and incidents over time
    /// and their latency histograms.
    Html,
}

impl CompareArgs {
    /// The `compare` command.
    pub(crate) fn command(self) -> CompareCommand {
        CompareCommand {
            before: self.before,
            after: self.after,
            format: match self.format {
                CompareFormat::Text => proxyscope::app::compare::Format::Text,
                CompareFormat::Json => proxyscope::app::compare::Format::Json,
                CompareFormat::Html => proxyscope::app::compare::Format::Html,
            },
            analysis: Options {
                budget: analyze::Budget::mb(self.legs.memory as usize),
                ..Options::default()
            },
            keylogs: self.legs.keylog.clone(),
            leg_flags: self.legs.flags(),
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct TimelineArgs {
    /// Capture files; several are merged in timestamp order. A capture filter may follow, as
    /// tcpdump takes it (`FILE... tcp port 3306`): it starts at the first word of a filter
    /// (tcp, udp, ip, ip6, host, net, port, portrange, src, dst, not, vlan, ...) that is not a
    /// file.
    #[arg(required_unless_present = "read", value_name = "FILE")]
    files: Vec<String>,
    /// A capture file, like tcpdump -r (repeatable; read before the FILE arguments).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Vec<String>,
    /// No progress bar on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Output format.
    #[arg(long, value_enum)]
    format: proxyscope::export::Format,
    /// Write here instead of to standard output.
    #[arg(short, long, value_name = "OUT")]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    filter: proxyscope::export::Filter,
    #[command(flatten)]
    bpf: BpfArg,
    #[command(flatten)]
    clock: ClockArg,
    #[command(flatten)]
    legs: LegArgs,
    /// Events kept per connection from its start, and as many from its end (the rest are
    /// counted as omitted). At most 65536: the memory budget is split by it.
    #[arg(long, value_name = "N", default_value_t = proxyscope::export::KEEP_EVENTS,
          value_parser = max_events)]
    events: usize,
}

/// The capture filter of the commands that read files.
#[derive(clap::Args)]
pub(crate) struct BpfArg {
    /// Only frames matching this capture filter (tcpdump's syntax, compiled by libpcap: the
    /// frames kept are those `tcpdump -r FILE EXPR` keeps); the summary counts those left out.
    #[arg(short = 'f', long = "bpf", value_name = "EXPR")]
    bpf: Option<String>,
}

/// Clock offsets of several capture files.
#[derive(clap::Args)]
pub(crate) struct ClockArg {
    /// FILE's clock is SECONDS ahead of the first file's (negative: behind): its timestamps
    /// are moved back by that much before the files are merged, instead of the offset
    /// estimated from the segments both files saw; repeatable. FILE as given or its file name.
    #[arg(long = "clock-offset", value_name = "FILE=SECONDS", value_parser = clock_offset)]
    clock_offset: Vec<(String, f64)>,
}

/// `--clock-offset FILE=SECONDS`: the file and a finite number of seconds (sign allowed).
fn clock_offset(s: &str) -> Result<(String, f64), String> {
    let (file, secs) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: expected FILE=SECONDS"))?;
    let v: f64 = secs
        .trim()
        .parse()
        .map_err(|_| format!("{secs:?} is not a number of seconds"))?;
    if file.is_empty() || !v.is_finite() || v.abs() > 1e9 {
        return Err(format!(
            "{s:?}: expected FILE=SECONDS, SECONDS from -1000000000 to 1000000000"
        ));
    }
    Ok((file.to_string(), v))
}

/// Leg labels and TLS keys, shared by the commands that read captures.
#[derive(clap::Args)]
pub(crate) struct LegArgs {
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

#[derive(Clone, Copy, ValueEnum)]
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) enum LiveFormat {
    /// A row per close as it happens, incident blocks, a summary at the end.
    Text,
    /// JSON Lines: every event, a verdict.close line per close, verdict.incident lines, and a
    /// live.summary line at the end.
    Jsonl,
    /// The JSON Lines records as Parquet rows, into -o FILE (or a pipe).
    Parquet,
}

// Parsed in every build (same --help, completions and man page); used only with `live`.
#[derive(clap::Args)]
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) struct LiveArgs {
    /// Interface to capture on: a name (`any` for all), or its number in the list `proxyscope
    /// interfaces` prints (from 1, like tcpdump -D; an interface named by digits wins).
    #[arg(short = 'i', long, value_name = "IFACE")]
    interface: String,
    /// Capture filter (tcpdump syntax), the words joined with spaces as tcpdump does: `live -i
    /// lo tcp port 3306`. Default: tcp.
    #[arg(value_name = "EXPRESSION")]
    filter: Vec<String>,
    /// The capture filter as one argument (the same as the trailing EXPRESSION; an error when
    /// both are given and differ).
    #[arg(short = 'f', long = "bpf", value_name = "EXPR")]
    bpf: Option<String>,
    /// Bytes kept of each packet, like tcpdump -s (0: the default, which keeps whole TLS
    /// records and loopback segments).
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 262_144)]
    snaplen: i32,
    /// Kernel capture buffer in KiB, like tcpdump -B (a suffix K, M or G gives the unit:
    /// `-B 64M`). Default 32768 KiB (32 MiB).
    #[arg(short = 'B', value_name = "KIB", value_parser = kib, conflicts_with = "buffer_size")]
    buffer_kib: Option<u64>,
    /// Kernel capture buffer in MiB (the same as -B with an M).
    #[arg(long, value_name = "MIB", value_parser = mib)]
    buffer_size: Option<u64>,
    /// No spinner on stderr.
    #[arg(short, long)]
    quiet: bool,
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
    /// JSON Lines, Parquet: only verdict, incident and summary records, no per-event ones.
    #[arg(long)]
    verdicts_only: bool,
    /// Parquet: write the events to this file, renamed into place when complete (at the stop,
    /// or at each rotation).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Parquet: start a new file every this many seconds, FILE's name with the UTC start time
    /// before its extension (events.20261202T103500Z.parquet).
    #[arg(long, value_name = "SECS", requires = "output",
          value_parser = clap::value_parser!(u64).range(1..))]
    output_rotate: Option<u64>,
    /// Text: colour the rows.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    color: ColorWhen,
    #[command(flatten)]
    look: LookArgs,
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
    /// Serve Prometheus metrics on ADDR at /metrics (`127.0.0.1:9750`; `:9750` for every
    /// address; port 0 picks one, said on stderr). See README "Metrics".
    #[arg(long, value_name = "ADDR", value_parser = metrics_addr)]
    metrics: Option<std::net::SocketAddr>,
}

/// How human-readable output writes times and how wide it is (analyze's text report, live's
/// rows).
#[derive(clap::Args)]
pub(crate) struct LookArgs {
    /// Times in UTC (default: the local zone, from TZ or /etc/localtime, as tcpdump).
    #[arg(long)]
    utc: bool,
    /// Time style, as tcpdump's -t options: -tt seconds since the epoch, -tttt date and time,
    /// -t/-ttt/-ttttt seconds since the capture's first frame (default: time of day, the date
    /// in the header).
    #[arg(short = 't', action = clap::ArgAction::Count, conflicts_with = "time")]
    t: u8,
    /// Time style by name.
    #[arg(long, value_enum, value_name = "STYLE")]
    time: Option<TimeStyleArg>,
    /// Wrap long lines at this many columns (0: never). Default: $COLUMNS, else the
    /// terminal's width, else 100.
    #[arg(long, value_name = "COLS")]
    width: Option<usize>,
}

/// Time styles of `--time`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum TimeStyleArg {
    /// Time of day, 10:20:31.142926 (the date once, in the header).
    Clock,
    /// Date and time, 2026-11-24 10:20:31.142926 (-tttt).
    Date,
    /// Seconds since the Unix epoch (-tt).
    Epoch,
    /// Seconds since the capture's first frame (-ttttt).
    Offset,
}

/// When to colour the text report.
#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    /// When standard output is a terminal and neither NO_COLOR nor TERM=dumb says otherwise.
    #[default]
    Auto,
    /// Always (CLICOLOR_FORCE=1 does the same for auto).
    Always,
    /// Never.
    Never,
}

impl LookArgs {
    /// The look of the text output (colour off; `analyze` sets it).
    pub(crate) fn look(&self) -> proxyscope::report::Look {
        use proxyscope::time::{Clock, TimeStyle};
        let style = match (self.time, self.t) {
            (Some(TimeStyleArg::Clock), _) | (None, 0) => TimeStyle::Clock,
            (Some(TimeStyleArg::Date), _) | (None, 4) => TimeStyle::Date,
            (Some(TimeStyleArg::Epoch), _) | (None, 2) => TimeStyle::Epoch,
            (Some(TimeStyleArg::Offset), _) | (None, _) => TimeStyle::Offset,
        };
        let width = self.width.unwrap_or_else(|| {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<usize>().ok())
                .filter(|&c| c > 0)
                .or_else(|| {
                    console::Term::stdout()
                        .size_checked()
                        .map(|(_, cols)| usize::from(cols))
                })
                .unwrap_or(proxyscope::report::text::DEFAULT_WIDTH)
        });
        proxyscope::report::Look {
            clock: Clock::new(style, self.utc),
            // Narrower than 40 columns nothing reads well; 0 stays "never wrap".
            width: if width == 0 { 0 } else { width.max(40) },
            color: false,
            all: false,
        }
    }
}

/// Whether standard output gets colour: `auto` asks anstream (a terminal, NO_COLOR,
/// CLICOLOR_FORCE, TERM=dumb).
fn color(when: ColorWhen) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// For a terminal: header, incidents by signature, the problem closes, a count of the
    /// clean ones (-a lists them), totals.
    Text,
    /// One JSON document (schema proxyscope.analyze/1).
    Json,
    /// The event stream, a JSON record per line (schema proxyscope.events/1, as `timeline
    /// --format jsonl` and `live --format jsonl`).
    Jsonl,
}

#[derive(clap::Args)]
pub(crate) struct AnalyzeArgs {
    /// Capture files; several are merged in timestamp order. A capture filter may follow, as
    /// tcpdump takes it (`FILE... tcp port 3306`): it starts at the first word of a filter
    /// (tcp, udp, ip, ip6, host, net, port, portrange, src, dst, not, vlan, ...) that is not a
    /// file.
    #[arg(required_unless_present = "read", value_name = "FILE")]
    files: Vec<String>,
    /// A capture file, like tcpdump -r (repeatable; read before the FILE arguments).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    read: Vec<String>,
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
    #[command(flatten)]
    filter: proxyscope::export::Filter,
    #[command(flatten)]
    bpf: BpfArg,
    #[command(flatten)]
    clock: ClockArg,
    #[command(flatten)]
    legs: LegArgs,
    /// Write, per incident, a pcap of the packets of the connections involved into this
    /// directory (a second pass over the files).
    #[arg(long, value_name = "DIR")]
    write_incident: Option<std::path::PathBuf>,
    /// Events kept per connection from its start, and as many from its end (JSON `events`);
    /// default 24, or 1000 with --format jsonl (as `timeline`). At most 65536: the memory
    /// budget is split by it.
    #[arg(long, value_name = "N", value_parser = max_events)]
    events: Option<usize>,
    /// No progress bar on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Text: list the clean closes too, with their details (-v does the same).
    #[arg(short = 'a', long)]
    all: bool,
    /// Text: colour the report.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    color: ColorWhen,
    #[command(flatten)]
    look: LookArgs,
}

/// The words a tcpdump filter expression can start with (pcap-filter(7)).
const FILTER_START: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "ether",
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "not",
    "!",
    "(",
    "vlan",
    "mpls",
    "pppoes",
    "less",
    "greater",
    "len",
    "proto",
    "gateway",
    "broadcast",
    "multicast",
    "inbound",
    "outbound",
    "ifname",
];

/// `-r` files first, then the FILE arguments up to a trailing filter expression, which joins
/// `-f` (the same expression twice is fine; two different ones are an error naming both).
fn inputs(
    read: Vec<String>,
    files: Vec<String>,
    bpf: Option<String>,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let start = files
        .iter()
        .position(|w| FILTER_START.contains(&w.as_str()) && !std::path::Path::new(w).exists());
    let (files, words) = match start {
        Some(i) => {
            let mut files = files;
            let words = files.split_off(i);
            (files, words)
        }
        None => (files, Vec::new()),
    };
    let files: Vec<String> = read.into_iter().chain(files).collect();
    if files.is_empty() {
        anyhow::bail!(
            "no capture file before the filter expression {:?}",
            words.join(" ")
        );
    }
    let words = (!words.is_empty()).then(|| words.join(" "));
    let filter = match (bpf, words) {
        (Some(f), Some(w)) if f.trim() != w.trim() => anyhow::bail!(
            "two capture filters: -f {f:?} and the expression {w:?} after the files; give one"
        ),
        (f, w) => f.or(w),
    };
    Ok((files, filter))
}

/// `-B`: KiB, or a number with a unit suffix (K, KiB, M, MiB, G, GiB; case ignored).
fn kib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size in KiB"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "k" | "kib" | "kb" => 1,
        "m" | "mib" | "mb" => 1 << 10,
        "g" | "gib" | "gb" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M or G)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `--buffer-size`: MiB unless a unit says otherwise, in KiB.
fn mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.ends_with(|c: char| c.is_ascii_digit()) {
        kib(&format!("{t}M"))
    } else {
        kib(t)
    }
}

/// `--metrics`: `HOST:PORT` (a name is resolved), or `:PORT` for every IPv4 address.
fn metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT or :PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} names no address"))
}

/// `--events`: a count the budget can hold (each kept event costs every tracked connection).
fn max_events(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= 65_536 => Ok(n),
        Ok(_) => Err(format!("{s} is more than 65536")),
        Err(_) => Err(format!("{s:?} is not a count")),
    }
}

impl AnalyzeArgs {
    /// The `analyze` command; `tty`: where progress may go (`-q` turns it off); `verbose`
    /// (-v) lists the clean closes as --all does.
    pub(crate) fn command(self, tty: Tty, verbose: u8) -> anyhow::Result<AnalyzeCommand> {
        let (files, capture_filter) = inputs(self.read, self.files, self.bpf.bpf)?;
        let look = proxyscope::report::Look {
            color: color(self.color),
            all: self.all || verbose > 0,
            ..self.look.look()
        };
        Ok(AnalyzeCommand {
            look,
            analysis: Options {
                tcp: tcp::Config {
                    max_buffer: self.max_buffer,
                    idle_timeout: self
                        .idle_timeout
                        .map(|s| (s * 1e9).clamp(0.0, i64::MAX as f64) as i64),
                    ..tcp::Config::default()
                },
                keep_events: self.events.unwrap_or(match self.format {
                    Format::Jsonl => proxyscope::export::KEEP_EVENTS,
                    Format::Text | Format::Json => proxyscope::dissect::KEEP_EVENTS,
                }),
                link_window_ns: (self.link_window_ms * 1e6).clamp(0.0, 1e12) as i64,
                max_frames: None,
                capture_filter,
                budget: analyze::Budget::mb(self.legs.memory as usize),
                clock_offsets: self.clock.clock_offset,
                ..Options::default()
            },
            format: match self.format {
                Format::Text => ReportFormat::Text,
                Format::Json => ReportFormat::Json,
                Format::Jsonl => ReportFormat::Jsonl,
            },
            filter: self.filter,
            leg_flags: self.legs.flags(),
            keylogs: self.legs.keylog,
            proxysql_logs: self.proxysql_log,
            write_incident: self.write_incident,
            files,
            tty: Tty {
                progress: tty.progress && !self.quiet,
                ..tty
            },
        })
    }
}

impl TimelineArgs {
    /// The `timeline` command; `tty`: where progress may go (`-q` turns it off).
    pub(crate) fn command(self, tty: Tty) -> anyhow::Result<TimelineCommand> {
        let (files, capture_filter) = inputs(self.read, self.files, self.bpf.bpf)?;
        if self.format == proxyscope::export::Format::Parquet {
            if cfg!(not(feature = "parquet")) {
                anyhow::bail!(proxyscope::export::NO_PARQUET);
            }
            if self.output.is_none() {
                binary_not_to_terminal(tty)?;
            }
        }
        Ok(TimelineCommand {
            format: self.format,
            output: self.output,
            filter: self.filter,
            capture_filter,
            keep_events: self.events,
            clock_offsets: self.clock.clock_offset,
            leg_flags: self.legs.flags(),
            budget: analyze::Budget::mb(self.legs.memory as usize),
            keylogs: self.legs.keylog,
            files,
            tty: Tty {
                progress: tty.progress && !self.quiet,
                ..tty
            },
        })
    }
}

/// Parquet is binary: refused on a terminal, where it would only garble the screen.
fn binary_not_to_terminal(tty: Tty) -> anyhow::Result<()> {
    if tty.stdout {
        anyhow::bail!(
            "--format parquet writes a binary file: give -o FILE, or redirect standard output \
             to a file or a pipe"
        );
    }
    Ok(())
}

impl ExplainArgs {
    /// The `explain` command.
    pub(crate) fn command(&self) -> ExplainCommand {
        ExplainCommand {
            text: self.text.join(" "),
            list: self.list,
            json: self.format == ExplainFormat::Json,
        }
    }
}

#[cfg(feature = "live")]
fn secs_to_ns(s: f64) -> i64 {
    (s * 1e9).clamp(0.0, i64::MAX as f64) as i64
}

#[cfg(feature = "live")]
impl LiveArgs {
    /// Progress on stderr unless `-q`.
    pub(crate) fn tty(&self, tty: Tty) -> Tty {
        Tty {
            progress: tty.progress && !self.quiet,
            ..tty
        }
    }

    /// The live run's settings; reads the key logs (saying on stderr which hold no secrets)
    /// and, as root, looks up the account to switch to.
    pub(crate) fn options(&self) -> anyhow::Result<proxyscope::live::LiveOptions> {
        use proxyscope::live::{self, DeviceOptions, LiveOptions, Rotation};
        match self.format {
            LiveFormat::Parquet if cfg!(not(feature = "parquet")) => {
                anyhow::bail!(proxyscope::export::NO_PARQUET)
            }
            LiveFormat::Parquet if self.output.is_none() => {
                binary_not_to_terminal(Tty {
                    progress: false,
                    stdout: std::io::IsTerminal::is_terminal(&std::io::stdout()),
                })?;
            }
            LiveFormat::Parquet => {}
            _ if self.output.is_some() => {
                anyhow::bail!(
                    "-o/--output is for --format parquet (other formats go to standard output)"
                )
            }
            _ => {}
        }
        Ok(LiveOptions {
            device: DeviceOptions {
                iface: live::device::pick_interface(&self.interface)?,
                // tcpdump -s 0: the default.
                snaplen: if self.snaplen == 0 {
                    262_144
                } else {
                    self.snaplen.max(96)
                },
                // libpcap takes an int of bytes: at most 2047 MiB.
                buffer_size: i32::try_from(
                    self.buffer_kib
                        .or(self.buffer_size)
                        .unwrap_or(32 << 10)
                        .clamp(1, 2047 << 10)
                        << 10,
                )
                .unwrap_or(i32::MAX),
                promisc: self.promisc,
                bpf: live::device::capture_filter(self.bpf.as_deref(), &self.filter)?,
                immediate: self.immediate,
            },
            analysis: Options {
                tcp: tcp::Config {
                    max_buffer: self.max_buffer,
                    idle_timeout: Some(secs_to_ns(self.idle_timeout)),
                    linger: secs_to_ns(self.linger),
                    ..tcp::Config::default()
                },
                budget: analyze::Budget::mb(self.legs.memory as usize),
                keylog: proxyscope::app::read_keylogs(&self.legs.keylog, &mut std::io::stderr())?,
                link_window_ns: (self.link_window_ms * 1e6).clamp(0.0, 1e12) as i64,
                ..Options::default()
            },
            leg_flags: self.legs.flags(),
            format: match self.format {
                LiveFormat::Text => live::LiveFormat::Text,
                LiveFormat::Jsonl => live::LiveFormat::Jsonl,
                LiveFormat::Parquet => live::LiveFormat::Parquet,
            },
            only_problems: self.only_problems,
            look: proxyscope::report::Look {
                color: color(self.color),
                ..self.look.look()
            },
            verdicts_only: self.verdicts_only,
            write: self.write.clone(),
            output: self.output.clone(),
            output_rotate: self.output_rotate.map(Duration::from_secs),
            rotation: Rotation {
                size: self.rotate_size.map(|mb| mb.saturating_mul(1_000_000)),
                seconds: self.rotate_seconds,
                count: self.rotate_count,
            },
            duration: self
                .duration
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9))),
            count: self.count,
            drop_privileges: !self.keep_privileges,
            user: match (&self.user, live::device::is_root()) {
                _ if self.keep_privileges => None,
                (Some(u), true) if u == "root" || u == "0" => None,
                (Some(u), true) => Some(live::device::account(u)?),
                (None, true) => Some(live::device::account("nobody")?),
                (Some(_), false) => anyhow::bail!("--user needs live to be started as root"),
                (None, false) => None,
            },
            metrics: self.metrics,
        })
    }
}
