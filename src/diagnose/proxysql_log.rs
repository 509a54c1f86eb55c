//! ProxySQL's error log, read next to a capture: each `Detected a broken connection ... on
//! (HG,HOST,PORT,THREAD_ID)` line names a backend by the thread id its greeting carried, so the
//! line can be set against what the capture says really happened to that connection.

use serde::Serialize;

/// One "broken connection" line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLine {
    /// Line number in the file (from 1).
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// Hostgroup.
    pub hostgroup: String,
    /// Backend host.
    pub host: String,
    /// Backend port.
    pub port: u16,
    /// Backend thread id (the MySQL connection id).
    pub thread_id: u32,
}

/// One `Closing unhealthy client connection IP:PORT` line: ProxySQL dropped that frontend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnhealthyLine {
    /// Line number in the file (from 1).
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// The client endpoint it names.
    #[serde(serialize_with = "display")]
    pub client: crate::common::Endpoint,
}

fn display<S: serde::Serializer>(v: &crate::common::Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What a ProxySQL log says about connections.
#[derive(Clone, Debug, Default)]
pub struct ProxysqlLog {
    /// `Detected a broken connection` lines.
    pub broken: Vec<BrokenLine>,
    /// `Closing unhealthy client connection` lines.
    pub unhealthy: Vec<UnhealthyLine>,
}

impl ProxysqlLog {
    /// Reads a log's text (other lines are ignored).
    pub fn parse(text: &str) -> ProxysqlLog {
        ProxysqlLog {
            broken: parse(text),
            unhealthy: parse_unhealthy(text),
        }
    }

    /// Adds another log's lines.
    pub fn extend(&mut self, other: ProxysqlLog) {
        self.broken.extend(other.broken);
        self.unhealthy.extend(other.unhealthy);
    }

    /// The connections it names, for deciding legs.
    pub fn names(&self) -> super::legs::LogNames {
        super::legs::LogNames {
            frontend_clients: self.unhealthy.iter().map(|u| u.client).collect(),
            backends: self
                .broken
                .iter()
                .map(|b| (b.host.parse().ok(), b.port, b.thread_id))
                .collect(),
        }
    }
}

/// The `Closing unhealthy client connection IP:PORT` lines of a ProxySQL log.
pub fn parse_unhealthy(text: &str) -> Vec<UnhealthyLine> {
    const KEY: &str = "Closing unhealthy client connection ";
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find(KEY) else { continue };
        let rest = line.get(at + KEY.len()..).unwrap_or("").trim();
        let word = rest.split_whitespace().next().unwrap_or("");
        let Some(client) = parse_endpoint(word) else {
            continue;
        };
        out.push(UnhealthyLine {
            line: i + 1,
            text: line.trim().to_string(),
            client,
        });
    }
    out
}

/// `IP:PORT` or `[V6]:PORT`.
fn parse_endpoint(s: &str) -> Option<crate::common::Endpoint> {
    let (ip, port) = s.rsplit_once(':')?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Some(crate::common::Endpoint {
        ip: ip.parse().ok()?,
        port: port.parse().ok()?,
    })
}

/// The "broken connection" lines of a ProxySQL log; other lines are ignored.
pub fn parse(text: &str) -> Vec<BrokenLine> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.contains("Detected a broken connection") {
            continue;
        }
        let Some(open) = line.find(" on (") else {
            continue;
        };
        let rest = line.get(open + 5..).unwrap_or("");
        let Some(close) = rest.find(')') else {
            continue;
        };
        let fields: Vec<&str> = rest
            .get(..close)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        let [hg, host, port, thread] = fields.as_slice() else {
            continue;
        };
        let (Ok(port), Ok(thread_id)) = (port.parse(), thread.parse()) else {
            continue;
        };
        out.push(BrokenLine {
            line: i + 1,
            text: line.trim().to_string(),
            hostgroup: hg.to_string(),
            host: host.to_string(),
            port,
            thread_id,
        });
    }
    out
}

/// A log line and the connection it names.
#[derive(Clone, Debug, Serialize)]
pub struct LogMatch {
    /// The line.
    pub log: BrokenLine,
    /// The backend connection with that thread id on that port, if captured.
    pub conn: Option<u64>,
    /// What the capture says happened to it.
    pub capture_says: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proxysql_and_lab_lines() {
        let text = "2024-03-01 10:00:00 MySQL_Session.cpp:4321:handler_again___status_RESETTING_CONNECTION(): [ERROR] Detected a broken connection while running query on (20,10.0.0.5,3306,1199180) , FD (Conn:35 , MyDS:35) , user app , last_used 19ms ago : 2013, Lost connection to MySQL server during query\n\
                    other line\n\
                    [ERROR] Detected a broken connection while during ping on (0,127.0.0.1,51935,5) , user app , last_used 40ms ago : 2013, Lost connection\n\
                    [ERROR] Detected a broken connection on (garbage)\n";
        let v = parse(text);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].hostgroup.as_str(), v[0].port, v[0].thread_id),
            ("20", 3306, 1199180)
        );
        assert_eq!(
            (v[1].line, v[1].host.as_str(), v[1].thread_id),
            (3, "127.0.0.1", 5)
        );
    }

    #[test]
    fn reads_unhealthy_client_lines() {
        let text = "2026-11-24 08:09:23 MySQL_Thread.cpp:4081:ProcessAllSessions_Healthy0(): [WARNING] Closing unhealthy client connection 127.0.0.1:44916\n\
                    x Closing unhealthy client connection [::1]:5000\n\
                    x Closing unhealthy client connection garbage\n";
        let v = parse_unhealthy(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].client.to_string(), "127.0.0.1:44916");
        assert_eq!(v[1].client.port, 5000);
        let names = ProxysqlLog::parse(text).names();
        assert_eq!(names.frontend_clients.len(), 2);
    }
}
