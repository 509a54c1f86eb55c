//! The `proxyscope` command line: parse arguments, run the library, map the outcome to an exit
//! code (0 ran, 1 usage or unreadable input, 2 partial input, 3 `compare` found a signature
//! worse).

mod cli;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use proxyscope::app::{self, Outcome};

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
        // Colour only on a terminal: logs piped to a file or grep stay plain.
        .with_ansi(io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Lab { args } => run_lab(args, cli.verbose),
        #[cfg(feature = "live")]
        Command::Live(args) => match live_cmd(*args) {
            Ok(code) => code,
            Err(e) => {
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
        Command::Manpage { dir } => match manpage_cmd(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
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
        Command::Explain(args) => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            edge(app::explain(&args.command(), &mut out, &mut io::stderr()))
        }
        Command::Analyze(args) => {
            // On a terminal, stdout stays line-buffered (rows show as they come); otherwise a
            // large buffer.
            let tty = tty();
            let out: Box<dyn Write> = if tty.stdout {
                Box::new(io::stdout().lock())
            } else {
                Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout().lock()))
            };
            match (*args).command(tty, cli.verbose) {
                Ok(cmd) => edge(app::analyze(&cmd, out, &mut io::stderr())),
                Err(e) => fail(e),
            }
        }
        Command::Compare(args) => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            edge(app::compare(&args.command(), &mut out, &mut io::stderr()))
        }
        Command::Timeline(args) => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            match args.command(tty()) {
                Ok(cmd) => edge(app::timeline(cmd, &mut out, &mut io::stderr())),
                Err(e) => fail(e),
            }
        }
    }
}

/// Progress wherever a person watches stderr (whatever stdout is: `analyze big.pcap >
/// report.txt` shows it too); the commands turn it off for `-q`.
fn tty() -> app::Tty {
    app::Tty {
        progress: io::stderr().is_terminal(),
        stdout: io::stdout().is_terminal(),
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
fn manpage_cmd(dir: Option<std::path::PathBuf>) -> Result<()> {
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
    Ok(())
}

/// The exit code of a command's outcome; errors go to stderr (a closed pipe is not one).
fn edge(r: Result<Outcome, app::Error>) -> ExitCode {
    match r {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => fail(e.into()),
    }
}

/// Says why a command failed; exit 1 (a closed pipe is not a failure: exit 0).
fn fail(e: anyhow::Error) -> ExitCode {
    if e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    eprintln!("proxyscope: {e:#}");
    ExitCode::from(1)
}

/// `live`: its settings from the arguments, then the library's driver on stdout.
#[cfg(feature = "live")]
fn live_cmd(args: cli::LiveArgs) -> Result<ExitCode> {
    let opts = args.options()?;
    let tty = args.tty(tty());
    let outcome = app::live(&opts, io::stdout().lock(), &mut io::stderr(), tty)?;
    Ok(ExitCode::from(outcome.code()))
}

/// `proxyscope lab ...`: runs `proxyscope-lab` (its own package, so that the analyzer does not
/// build or ship the proxy's tokio and rustls), found beside this executable or on PATH. On Unix
/// it replaces this process, so a signal sent to the pid the scripts started reaches the lab.
fn run_lab(args: Vec<std::ffi::OsString>, verbose: u8) -> ExitCode {
    const LAB: &str = "proxyscope-lab";
    let beside = std::env::current_exe()
        .map(|exe| exe.with_file_name(LAB))
        .ok()
        .filter(|p| p.is_file());
    let mut cmd =
        std::process::Command::new(beside.as_deref().unwrap_or(std::path::Path::new(LAB)));
    // `proxyscope -v lab ...`: the global flag was ours to parse; the lab takes it too.
    cmd.args(std::iter::repeat_n("-v", verbose.into()))
        .args(args);
    #[cfg(unix)]
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    #[cfg(not(unix))]
    let err = match cmd.status() {
        Ok(s) => return ExitCode::from(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
        Err(e) => e,
    };
    if err.kind() == io::ErrorKind::NotFound {
        eprintln!(
            "proxyscope lab: {LAB} is not installed, neither beside this executable nor on PATH; \
             `cargo install --locked --path lab` installs it, `cargo build --release` builds it \
             beside proxyscope"
        );
    } else {
        eprintln!("proxyscope lab: cannot run {LAB}: {err}");
    }
    ExitCode::from(1)
}
