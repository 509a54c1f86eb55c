//! The `proxyscope-lab` binary's command line (running the lab needs a MySQL server: that is
//! tests/lab_proxy.rs at the root, with PROXYSCOPE_LAB=1).

use std::process::Command;

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_proxyscope-lab"))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn help_lists_every_option_and_every_fault() {
    let out = lab(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--backend ",
        "--backend-user",
        "--backend-tls",
        "--backend-ca",
        "--cert",
        "--key",
        "--keylog",
        "--verbose",
        "--ground-truth",
        "--fault ",
        "--dirty-ssl-break",
        "--ping-interval-ms",
        "--no-tls-offer",
        "--frontend-tls12",
        "--duration",
    ] {
        assert!(help.contains(opt), "{opt} missing from:\n{help}");
    }
    for f in proxyscope_lab::Fault::ALL {
        assert!(
            help.contains(f.name()),
            "{} missing from:\n{help}",
            f.name()
        );
    }
}

#[test]
fn usage_errors_exit_1_with_clap_s_message() {
    let out = lab(&["--backend", "127.0.0.1:3306"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend-user"));
    let out = lab(&[
        "--backend",
        "x:1",
        "--backend-user",
        "u",
        "--fault",
        "no-such-fault",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-fault"));
}

#[test]
fn a_listen_address_it_cannot_bind_is_one_line_and_exit_1() {
    let out = lab(&[
        "--listen",
        "256.0.0.1:1",
        "--backend",
        "127.0.0.1:9",
        "--backend-user",
        "u",
        "--duration",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("proxyscope lab: configuration: listen on 256.0.0.1:1"),
        "{err}"
    );
}
