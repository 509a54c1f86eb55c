//! MySQL decoding details on real captures, checked against tshark: query attributes (the SQL
//! printed without them, names and values), COM_CHANGE_USER (the connection's user follows it,
//! its auth exchange is not commands) and the SQLSTATE of an ERR picked up mid-stream.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use proxyscope::event::{Com, Kind};
use proxyscope::model::Summary;

const COM_QUERY: Com = Com::of(proxyscope::event::Command::COM_QUERY);
const COM_CHANGE_USER: Com = Com::of(proxyscope::event::Command::COM_CHANGE_USER);

/// tshark's fields for the packets matching `filter`, one `Vec` per packet.
fn tshark(path: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path);
    cmd.args(["-Y", filter, "-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// One connection's (frame, text, attribute names, attribute values) per COM_QUERY.
type Query = (u64, String, Vec<String>, Vec<String>);

fn queries(s: &Summary) -> Vec<Query> {
    s.events
        .iter()
        .filter_map(|e| match &e.event.kind {
            Kind::Command {
                cmd: COM_QUERY,
                text,
                attrs,
                ..
            } => Some((
                e.event.at.frame,
                text.clone().unwrap_or_default(),
                attrs.iter().map(|a| a.name.clone()).collect(),
                attrs.iter().filter_map(|a| a.value.clone()).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// tshark's COM_QUERYs of `path`.
fn tshark_queries(path: &Path) -> Vec<Query> {
    tshark(
        path,
        "mysql.command == 3",
        &[
            "frame.number",
            "mysql.query",
            "mysql.query_attr_name",
            "mysql.query_attr_value",
        ],
    )
    .into_iter()
    .map(|f| {
        let get = |i: usize| f.get(i).cloned().unwrap_or_default();
        (
            get(0).parse().unwrap(),
            get(1),
            split(&get(2)),
            split(&get(3)),
        )
    })
    .collect()
}

/// A copy of `src` with only frames `range` (editcap numbering), in the temp directory.
fn cut(src: &Path, range: &str, name: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("proxyscope-{}-{name}", std::process::id()));
    let st = Command::new("editcap")
        .arg("-r")
        .arg(src)
        .arg(&dst)
        .arg(range)
        .status()
        .expect("editcap runs (it comes with tshark)");
    assert!(st.success());
    dst
}

fn only(path: &Path) -> Summary {
    let (mut sums, _) = analyze_file(path);
    assert_eq!(sums.len(), 1, "{}: one connection", path.display());
    sums.remove(0)
}

#[test]
fn query_attributes_are_not_query_text() {
    let Some(dir) = shared_captures() else { return };
    let path = dir.join("mysql8-query-attributes.pcap");
    let s = only(&path);
    let ours = queries(&s);
    let theirs = tshark_queries(&path);
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert_eq!(ours, theirs);
    // The capture has attributes, and tshark sees their names: the comparison covers them.
    assert!(ours
        .iter()
        .any(|q| q.2 == ["n1", "n2"] && q.3 == ["v1", "v2"]));
    assert!(ours.iter().all(|q| !q.1.contains('\0')));

    // Picked up after the login (from the first query on): the attributes are recognised by
    // their shape, and the texts are the same as tshark's on the whole capture.
    let mid = cut(&path, "11-100000", "query-attributes-mid.pcap");
    let s = only(&mid);
    std::fs::remove_file(&mid).ok();
    assert!(s.mid_stream);
    let texts = |q: &[Query]| -> Vec<(String, Vec<String>, Vec<String>)> {
        q.iter()
            .map(|q| (q.1.clone(), q.2.clone(), q.3.clone()))
            .collect()
    };
    assert_eq!(texts(&queries(&s)), texts(&theirs));
}

#[test]
fn change_user_changes_the_user_and_its_auth_is_not_commands() {
    let Some(dir) = shared_captures() else { return };
    let path = dir.join("mysql8-change-user.pcap");
    let s = only(&path);
    let m = s.mysql.as_ref().expect("mysql facts");
    // tshark's user names: the login's, then the COM_CHANGE_USER's.
    let users: Vec<String> = tshark(&path, "mysql.user", &["mysql.user"])
        .into_iter()
        .filter_map(|f| f.into_iter().next())
        .collect();
    assert_eq!(users, ["root", "root2"]);
    assert_eq!(m.user.as_deref(), Some("root2"));
    assert_eq!(m.previous_user.as_deref(), Some("root"));
    let commands: Vec<u8> = s
        .events
        .iter()
        .filter_map(|e| match e.event.kind {
            Kind::Command { cmd, .. } => Some(cmd.0),
            _ => None,
        })
        .collect();
    let theirs: Vec<u8> = tshark(&path, "mysql.command", &["mysql.command"])
        .iter()
        .map(|f| f[0].parse().unwrap())
        .collect();
    assert_eq!(commands, theirs);
    assert_eq!(m.commands, theirs.len() as u64);
    let change = s.events.iter().find_map(|e| match &e.event.kind {
        Kind::Command {
            cmd: COM_CHANGE_USER,
            user,
            ..
        } => Some(user.clone()),
        _ => None,
    });
    assert_eq!(change, Some(Some("root2".to_string())));
    // Both auth switch responses (login, change user) are auth, at tshark's frames.
    let ours: Vec<u64> = s
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                Kind::AuthResponse {
                    what: "auth_switch_response",
                    ..
                }
            )
        })
        .map(|e| e.event.at.frame)
        .collect();
    let theirs: Vec<u64> = tshark(&path, "mysql.auth_switch_response.data", &["frame.number"])
        .iter()
        .map(|f| f[0].parse().unwrap())
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 2);
    let logins = s
        .events
        .iter()
        .filter(|e| matches!(e.event.kind, Kind::Ok { login: true, .. }))
        .count();
    assert_eq!(logins, 2);
}

#[test]
fn err_picked_up_mid_stream_keeps_its_sqlstate() {
    let Some(dir) = shared_captures() else { return };
    let path = dir.join("mysql-prepared-and-aborts.pcap");
    // tshark, with the login seen: frame 38 is ERR 1146 42S02.
    let theirs = tshark(
        &path,
        "mysql.error_code",
        &["mysql.error_code", "mysql.sqlstate", "mysql.error.message"],
    );
    let want: Vec<(u16, String, String)> = theirs
        .iter()
        .map(|f| (f[0].parse().unwrap(), f[1].clone(), f[2].clone()))
        .filter(|e| e.0 == 1146)
        .collect();
    assert_eq!(want.len(), 1);
    // Frames 35-45: that connection from its query on, no greeting or login.
    let mid = cut(&path, "35-45", "prepared-mid.pcap");
    let (sums, _) = analyze_file(&mid);
    std::fs::remove_file(&mid).ok();
    let s = sums
        .iter()
        .find(|s| s.mysql.as_ref().is_some_and(|m| m.errors > 0))
        .expect("the connection with the ERR");
    assert!(s.mid_stream);
    assert_eq!(
        s.mysql.as_ref().and_then(|m| m.server_version.as_ref()),
        None
    );
    let got: Vec<(u16, String, String)> = s
        .events
        .iter()
        .filter_map(|e| match &e.event.kind {
            Kind::Err {
                code,
                sqlstate,
                message,
                ..
            } => Some((*code, sqlstate.clone(), message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(got, want);
}
