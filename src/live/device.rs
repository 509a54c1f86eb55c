//! The capture device: list interfaces, open one with libpcap, drop privileges afterwards.

use pcap::{Active, Capture, Device, Precision};

/// Why a live capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The process may not capture on this interface.
    #[error(
        "no permission to capture on {iface}: live capture needs the CAP_NET_RAW capability \
         (CAP_NET_ADMIN too for promiscuous mode). Run as root, or grant it once with \
         `sudo setcap cap_net_raw,cap_net_admin=eip {exe}` (libpcap said: {detail})"
    )]
    Permission {
        /// Interface name.
        iface: String,
        /// This program's path, for the setcap line.
        exe: String,
        /// libpcap's message.
        detail: String,
    },
    /// `-i N` beyond the list.
    #[error("no interface number {index}: `proxyscope interfaces` lists {count}, numbered from 1")]
    NoIndex {
        /// The number given.
        index: String,
        /// Interfaces listed.
        count: usize,
    },
    /// A filter both as `-f`/`--bpf` and as trailing words, and they differ.
    #[error(
        "two different capture filters: -f/--bpf {flag:?} and the expression {words:?}; give one"
    )]
    FilterTwice {
        /// The `-f` value.
        flag: String,
        /// The trailing words, joined.
        words: String,
    },
    /// No such interface.
    #[error("no interface named {iface} (proxyscope interfaces lists them): {detail}")]
    NoDevice {
        /// Interface name.
        iface: String,
        /// libpcap's message.
        detail: String,
    },
    /// Giving up privileges after opening the device failed.
    #[error("dropping privileges: {0}")]
    Privileges(String),
    /// The BPF filter does not compile.
    #[error("bad capture filter {filter:?}: {detail}")]
    Filter {
        /// The filter text.
        filter: String,
        /// libpcap's message.
        detail: String,
    },
    /// Another libpcap failure.
    #[error("{what}: {detail}")]
    Pcap {
        /// What was being done.
        what: String,
        /// libpcap's message.
        detail: String,
    },
    /// `--metrics ADDR` cannot be listened on.
    #[error("cannot serve metrics on {addr}: {detail}")]
    Metrics {
        /// The address asked.
        addr: std::net::SocketAddr,
        /// The system's message.
        detail: String,
    },
    /// Writing the report or a capture file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How to open the device.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// Interface name (`any` for all, as cooked SLL2 frames).
    pub iface: String,
    /// Bytes kept of each packet.
    pub snaplen: i32,
    /// Kernel buffer size in bytes.
    pub buffer_size: i32,
    /// Promiscuous mode.
    pub promisc: bool,
    /// BPF filter.
    pub bpf: String,
    /// libpcap's immediate mode: each packet delivered at once. On Linux it makes libpcap use
    /// TPACKET_V2's fixed-size ring slots (one per packet, as large as the snap length or the
    /// MTU), so a 32 MiB buffer on loopback (64 KiB MTU) holds only about 500 packets and a
    /// saturated loopback benchmark overflows it; off (the default), TPACKET_V3 packs packets
    /// into blocks handed over when full or after the read timeout (100 ms). Verdicts wait for
    /// the linger anyway, so immediate delivery buys no earlier output.
    pub immediate: bool,
}

/// One interface, as `tcpdump -D` shows it.
#[derive(Clone, Debug)]
pub struct Interface {
    /// Name to pass to `-i`.
    pub name: String,
    /// libpcap's description.
    pub desc: Option<String>,
    /// Flags in words: Up, Running, Loopback, Wireless.
    pub flags: Vec<&'static str>,
}

fn pcap_err(what: &str, e: pcap::Error) -> LiveError {
    LiveError::Pcap {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// The capture filter: `-f`/`--bpf`, or the trailing words joined with spaces as tcpdump joins
/// them; `tcp` when neither is given; an error when both are and differ.
pub fn capture_filter(flag: Option<&str>, words: &[String]) -> Result<String, LiveError> {
    let joined = (!words.is_empty()).then(|| words.join(" "));
    match (flag, joined) {
        (Some(f), Some(w)) if f.trim() != w.trim() => Err(LiveError::FilterTwice {
            flag: f.to_string(),
            words: w,
        }),
        (Some(f), _) => Ok(f.to_string()),
        (None, Some(w)) => Ok(w),
        (None, None) => Ok("tcp".into()),
    }
}

/// `-i`: a name, or a number in the list [`interfaces`] gives (from 1, as `proxyscope
/// interfaces` and `tcpdump -D` print it). An interface whose name is those digits wins.
pub fn pick_interface(arg: &str) -> Result<String, LiveError> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(arg.to_string());
    }
    let names: Vec<String> = interfaces()?.into_iter().map(|i| i.name).collect();
    let picked = pick_from(arg, &names)?;
    if picked != arg {
        tracing::info!("-i {arg}: interface {picked}");
    }
    Ok(picked)
}

/// [`pick_interface`] in this list of names.
fn pick_from(arg: &str, names: &[String]) -> Result<String, LiveError> {
    if names.iter().any(|n| n == arg) {
        return Ok(arg.to_string());
    }
    let index: usize = arg.parse().unwrap_or(0);
    index
        .checked_sub(1)
        .and_then(|i| names.get(i))
        .cloned()
        .ok_or(LiveError::NoIndex {
            index: arg.to_string(),
            count: names.len(),
        })
}

/// The interfaces libpcap can capture on.
pub fn interfaces() -> Result<Vec<Interface>, LiveError> {
    let list = Device::list().map_err(|e| pcap_err("listing interfaces", e))?;
    Ok(list
        .into_iter()
        .map(|d| {
            let mut flags = Vec::new();
            if d.flags.is_up() {
                flags.push("Up");
            }
            if d.flags.is_running() {
                flags.push("Running");
            }
            if d.flags.is_wireless() {
                flags.push("Wireless");
            }
            if d.flags.is_loopback() {
                flags.push("Loopback");
            }
            Interface {
                name: d.name,
                desc: d.desc,
                flags,
            }
        })
        .collect())
}

fn is_permission(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("permission") || m.contains("not permitted")
}

/// Opens `opts.iface` for capture: non-blocking, immediate mode, nanosecond timestamps, the
/// filter set; `any` is switched to SLL2 frames (they name the interface) when libpcap can.
pub fn open(opts: &DeviceOptions) -> Result<Capture<Active>, LiveError> {
    let inactive = Capture::from_device(opts.iface.as_str())
        .map_err(|e| pcap_err(&format!("opening {}", opts.iface), e))?
        .snaplen(opts.snaplen)
        .buffer_size(opts.buffer_size)
        .promisc(opts.promisc)
        .immediate_mode(opts.immediate)
        .timeout(100)
        .precision(Precision::Nano);
    let mut cap = inactive.open().map_err(|e| {
        let detail = e.to_string();
        if is_permission(&detail) {
            LiveError::Permission {
                iface: opts.iface.clone(),
                exe: std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "proxyscope".into()),
                detail,
            }
        } else if detail.contains("No such device") || detail.contains("doesn't exist") {
            LiveError::NoDevice {
                iface: opts.iface.clone(),
                detail,
            }
        } else {
            pcap_err(&format!("opening {}", opts.iface), e)
        }
    })?;
    if opts.iface == "any" {
        // SLL2 carries the interface index; SLL (v1) is what libpcap picks by default.
        let sll2 = pcap::Linktype(276);
        if cap.list_datalinks().is_ok_and(|l| l.contains(&sll2)) {
            if let Err(e) = cap.set_datalink(sll2) {
                tracing::info!("-i any stays on {:?}: {e}", cap.get_datalink());
            }
        }
    }
    tracing::info!(
        "{}: opened, link-type {:?}, snaplen {}, kernel buffer {} bytes{}{}",
        opts.iface,
        cap.get_datalink(),
        opts.snaplen,
        opts.buffer_size,
        if opts.promisc { ", promiscuous" } else { "" },
        if opts.immediate {
            ", immediate mode"
        } else {
            ""
        }
    );
    cap.filter(&opts.bpf, true).map_err(|e| LiveError::Filter {
        filter: opts.bpf.clone(),
        detail: e.to_string(),
    })?;
    tracing::info!("filter {:?} compiled (optimised) and set", opts.bpf);
    cap.setnonblock()
        .map_err(|e| pcap_err("setting non-blocking mode", e))
}

/// Who `live` runs as once the device is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks up `user` (a name from `/etc/passwd`, or a numeric uid) for the switch after the
/// device is open.
pub fn account(user: &str) -> Result<Account, LiveError> {
    let bad = |detail: String| LiveError::Privileges(format!("--user {user:?}: {detail}"));
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if let [name, _, uid, gid, ..] = f.as_slice() {
            if *name == user || *uid == user {
                let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) else {
                    return Err(bad(format!("malformed /etc/passwd line {line:?}")));
                };
                return Ok(Account { uid, gid });
            }
        }
    }
    match user.parse::<u32>() {
        Ok(uid) => Ok(Account { uid, gid: uid }),
        Err(_) => Err(bad("no such user".into())),
    }
}

/// True when the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives up privileges once the device is open: the rest of the run parses untrusted packets
/// and needs none. As root with `to` given: the bounding set is cleared, the groups, gids and
/// uids become `to`'s (which also empties the permitted and effective capabilities), then
/// every capability set is cleared; in every case `no_new_privs` is set, so no later `exec`
/// can regain anything. Must run while the process has a single thread (the kernel calls
/// change the calling thread). Returns what was done, for the log; an error when the switch
/// was asked for and failed.
pub fn drop_privileges(to: Option<Account>) -> Result<String, LiveError> {
    use caps::CapSet;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        failed.push(format!("{threads} threads: only this one changed"));
    }
    let had = caps::read(None, CapSet::Effective)
        .map(|s| s.len())
        .unwrap_or(0);
    // The bounding set needs CAP_SETPCAP, so it goes first.
    match caps::clear(None, CapSet::Bounding) {
        Ok(()) => done.push("cleared the bounding set".to_string()),
        Err(e) => failed.push(format!("bounding set: {e}")),
    }
    if let Some(a) = to {
        let gid = rustix::process::Gid::from_raw(a.gid);
        let uid = rustix::process::Uid::from_raw(a.uid);
        let switched = rustix::thread::set_thread_groups(&[gid])
            .and_then(|()| rustix::thread::set_thread_res_gid(gid, gid, gid))
            .and_then(|()| rustix::thread::set_thread_res_uid(uid, uid, uid));
        if let Err(e) = switched {
            return Err(LiveError::Privileges(format!(
                "switching to uid {} gid {}: {e}",
                a.uid, a.gid
            )));
        }
        done.push(format!("switched to uid {} gid {}", a.uid, a.gid));
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        if let Err(e) = caps::clear(None, set) {
            failed.push(format!("{set:?}: {e}"));
        }
    }
    done.push(format!("dropped all capabilities ({had} were effective)"));
    match rustix::thread::set_no_new_privs(true) {
        Ok(()) => done.push("set no_new_privs".into()),
        Err(e) => failed.push(format!("no_new_privs: {e}")),
    }
    if !failed.is_empty() {
        done.push(format!("not done: {}", failed.join("; ")));
    }
    Ok(done.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_comes_from_the_flag_or_the_words_and_never_both_differently() {
        let words = |w: &str| w.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(capture_filter(None, &[]).unwrap(), "tcp");
        assert_eq!(
            capture_filter(None, &words("tcp port 3306")).unwrap(),
            "tcp port 3306"
        );
        assert_eq!(capture_filter(Some("udp"), &[]).unwrap(), "udp");
        assert_eq!(
            capture_filter(Some("tcp port 3306"), &words("tcp port 3306")).unwrap(),
            "tcp port 3306"
        );
        let e = capture_filter(Some("tcp"), &words("tcp port 3306")).unwrap_err();
        assert!(matches!(e, LiveError::FilterTwice { .. }), "{e}");
    }

    #[test]
    fn interfaces_are_picked_by_number_from_one_unless_a_name_matches() {
        let names: Vec<String> = ["eth0", "any", "lo", "2"].map(String::from).to_vec();
        assert_eq!(pick_from("1", &names).unwrap(), "eth0");
        assert_eq!(pick_from("3", &names).unwrap(), "lo");
        // An interface named "2" wins over the second in the list.
        assert_eq!(pick_from("2", &names).unwrap(), "2");
        for bad in ["0", "5", "99999999999999999999999"] {
            let e = pick_from(bad, &names).unwrap_err().to_string();
            assert!(
                e.contains("proxyscope interfaces") && e.contains("lists 4"),
                "{e}"
            );
        }
    }

    #[test]
    fn permission_messages_are_recognised() {
        assert!(is_permission(
            "lo: You don't have permission to perform this capture on that device \
             (socket: Operation not permitted)"
        ));
        assert!(!is_permission("lo: No such device exists"));
    }
}
