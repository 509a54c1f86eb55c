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
}
