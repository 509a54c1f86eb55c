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
    /// No such interface.
    #[error("no interface named {iface} (proxyscope interfaces lists them): {detail}")]
    NoDevice {
        /// Interface name.
        iface: String,
        /// libpcap's message.
        detail: String,
    },
    /// The BPF filter does not compile.
    #[error("bad --bpf filter {filter:?}: {detail}")]
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
    /// Writing the report or a capture file failed.
    #[error("{0}")]
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
    cap.filter(&opts.bpf, true).map_err(|e| LiveError::Filter {
        filter: opts.bpf.clone(),
        detail: e.to_string(),
    })?;
    cap.setnonblock()
        .map_err(|e| pcap_err("setting non-blocking mode", e))
}

/// Gives up every capability once the device is open: the rest of the run parses untrusted
/// packets and needs none. Returns what was done, for the log.
pub fn drop_privileges() -> String {
    #[cfg(target_os = "linux")]
    {
        use caps::CapSet;
        let had = caps::read(None, CapSet::Effective)
            .map(|s| s.len())
            .unwrap_or(0);
        let mut failed = Vec::new();
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
        if failed.is_empty() {
            format!("dropped all capabilities ({had} were effective)")
        } else {
            format!("could not drop capabilities: {}", failed.join("; "))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        "capabilities are not dropped on this platform".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_messages_are_recognised() {
        assert!(is_permission(
            "lo: You don't have permission to perform this capture on that device \
             (socket: Operation not permitted)"
        ));
        assert!(!is_permission("lo: No such device exists"));
    }
}
