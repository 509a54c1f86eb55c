//! The head of an HTTP/1.x request, as the metrics endpoint of `live` reads it from the
//! network. Outside `live` (no feature needed) so that its fuzz target builds without libpcap.

/// What an HTTP request to the metrics endpoint asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask {
    /// `GET /metrics` (`head`: a HEAD request, no body in the answer).
    Metrics {
        /// HEAD, not GET.
        head: bool,
    },
    /// GET or HEAD of another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not an HTTP/1.x request line.
    Bad,
}

/// Reads a request head (request line and headers, without the blank line): what is asked, and
/// whether the connection stays open after the answer (a decoder of bytes from the network:
/// fuzzed by `fuzz/fuzz_targets/metrics_http.rs`).
pub fn parse(head: &[u8]) -> (Ask, bool) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut words = lines.next().unwrap_or("").split(' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(target), Some(version), None) = (method, target, version, words.next())
    else {
        return (Ask::Bad, false);
    };
    if !version.starts_with("HTTP/1.") {
        return (Ask::Bad, false);
    }
    let mut keep = version == "HTTP/1.1";
    let mut body = false;
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep = true;
            }
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            body = true;
        }
    }
    let path = target.split('?').next().unwrap_or("");
    let ask = match method {
        "GET" | "HEAD" if path == "/metrics" => Ask::Metrics {
            head: method == "HEAD",
        },
        "GET" | "HEAD" => Ask::NotFound,
        _ => Ask::BadMethod,
    };
    // A body is never read: the connection closes after the answer instead.
    (ask, keep && !body)
}
