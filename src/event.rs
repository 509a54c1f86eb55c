//! Events: every decoded fact about a connection, with where it was seen.
//!
//! Decoders produce [`Event`]s in stream order; the dissector keeps a bounded selection per
//! connection (the first ones, which hold the handshake, and the last ones, which hold the close)
//! and counts the rest. Kinds are a closed enum so that no per-packet JSON is built on the hot
//! path; JSON is made only when a report asks for it.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tls_parser::{
    TlsAlertDescription, TlsAlertSeverity, TlsCipherSuiteID, TlsHandshakeType, TlsVersion,
};

use crate::common::{At, Side};

/// The protocol layer an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// TCP.
    Tcp,
    /// TLS records and handshake.
    Tls,
    /// The MySQL protocol.
    Mysql,
}

/// One decoded fact.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Where the bytes that showed it were captured.
    pub at: At,
    /// Sending side of the connection (as in `tcp::Connection::ep`).
    pub side: Side,
    /// What it is.
    pub kind: Kind,
}

/// Which way something went: sent by the client (`c2s`) or by the server (`s2c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Dir {
    /// Client to server.
    #[serde(rename = "c2s")]
    C2s,
    /// Server to client.
    #[serde(rename = "s2c")]
    S2c,
}

impl Dir {
    /// `C2s` when the client sent it.
    pub fn from_client(client: bool) -> Dir {
        if client {
            Dir::C2s
        } else {
            Dir::S2c
        }
    }

    /// `c2s` or `s2c`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }
}

impl std::fmt::Display for Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

pub use mysql_common::constants::{CapabilityFlags, Command, StatusFlags};

/// A MySQL client command byte (COM_*). A newtype rather than mysql_common's [`Command`] alone
/// because a capture can hold any byte there and reports keep it (`"code"`); [`Com::command`]
/// gives the [`Command`] it names, when it names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Com(pub u8);

impl Com {
    /// COM_QUIT: the client's goodbye.
    pub const QUIT: Com = Com::of(Command::COM_QUIT);
    /// COM_PING: a keep-alive.
    pub const PING: Com = Com::of(Command::COM_PING);

    /// The byte of `c`.
    pub const fn of(c: Command) -> Com {
        Com(c as u8)
    }

    /// The command this byte names (MySQL and MariaDB), if any.
    pub fn command(self) -> Option<Command> {
        use Command::*;
        Some(match self.0 {
            0x00 => COM_SLEEP,
            0x01 => COM_QUIT,
            0x02 => COM_INIT_DB,
            0x03 => COM_QUERY,
            0x04 => COM_FIELD_LIST,
            0x05 => COM_CREATE_DB,
            0x06 => COM_DROP_DB,
            0x07 => COM_REFRESH,
            0x08 => COM_DEPRECATED_1,
            0x09 => COM_STATISTICS,
            0x0a => COM_PROCESS_INFO,
            0x0b => COM_CONNECT,
            0x0c => COM_PROCESS_KILL,
            0x0d => COM_DEBUG,
            0x0e => COM_PING,
            0x0f => COM_TIME,
            0x10 => COM_DELAYED_INSERT,
            0x11 => COM_CHANGE_USER,
            0x12 => COM_BINLOG_DUMP,
            0x13 => COM_TABLE_DUMP,
            0x14 => COM_CONNECT_OUT,
            0x15 => COM_REGISTER_SLAVE,
            0x16 => COM_STMT_PREPARE,
            0x17 => COM_STMT_EXECUTE,
            0x18 => COM_STMT_SEND_LONG_DATA,
            0x19 => COM_STMT_CLOSE,
            0x1a => COM_STMT_RESET,
            0x1b => COM_SET_OPTION,
            0x1c => COM_STMT_FETCH,
            0x1d => COM_DAEMON,
            0x1e => COM_BINLOG_DUMP_GTID,
            0x1f => COM_RESET_CONNECTION,
            0xfa => COM_STMT_BULK_EXECUTE,
            _ => return None,
        })
    }

    /// The name in reports (`com_query`), as in the MySQL and MariaDB sources; `com_unknown`
    /// for a byte that names no command.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self.command() {
            Some(COM_SLEEP) => "com_sleep",
            Some(COM_QUIT) => "com_quit",
            Some(COM_INIT_DB) => "com_init_db",
            Some(COM_QUERY) => "com_query",
            Some(COM_FIELD_LIST) => "com_field_list",
            Some(COM_CREATE_DB) => "com_create_db",
            Some(COM_DROP_DB) => "com_drop_db",
            Some(COM_REFRESH) => "com_refresh",
            // COM_SHUTDOWN in MariaDB and MySQL before 8.0.
            Some(COM_DEPRECATED_1) => "com_shutdown",
            Some(COM_STATISTICS) => "com_statistics",
            Some(COM_PROCESS_INFO) => "com_process_info",
            Some(COM_CONNECT) => "com_connect",
            Some(COM_PROCESS_KILL) => "com_process_kill",
            Some(COM_DEBUG) => "com_debug",
            Some(COM_PING) => "com_ping",
            Some(COM_TIME) => "com_time",
            Some(COM_DELAYED_INSERT) => "com_delayed_insert",
            Some(COM_CHANGE_USER) => "com_change_user",
            Some(COM_BINLOG_DUMP) => "com_binlog_dump",
            Some(COM_TABLE_DUMP) => "com_table_dump",
            Some(COM_CONNECT_OUT) => "com_connect_out",
            Some(COM_REGISTER_SLAVE) => "com_register_slave",
            Some(COM_STMT_PREPARE) => "com_stmt_prepare",
            Some(COM_STMT_EXECUTE) => "com_stmt_execute",
            Some(COM_STMT_SEND_LONG_DATA) => "com_stmt_send_long_data",
            Some(COM_STMT_CLOSE) => "com_stmt_close",
            Some(COM_STMT_RESET) => "com_stmt_reset",
            Some(COM_SET_OPTION) => "com_set_option",
            Some(COM_STMT_FETCH) => "com_stmt_fetch",
            Some(COM_DAEMON) => "com_daemon",
            Some(COM_BINLOG_DUMP_GTID) => "com_binlog_dump_gtid",
            Some(COM_RESET_CONNECTION) => "com_reset_connection",
            Some(COM_STMT_BULK_EXECUTE) => "com_stmt_bulk_execute",
            // A sentinel in mysql_common, not a command on the wire.
            Some(COM_END) | None => "com_unknown",
        }
    }
}

impl From<Command> for Com {
    fn from(c: Command) -> Com {
        Com::of(c)
    }
}

/// TLS alert description names (RFC 8446 §6, RFC 5246 §7.2), as the RFCs spell them
/// (tls-parser's own names are CamelCase).
pub fn alert_name(desc: TlsAlertDescription) -> &'static str {
    type D = TlsAlertDescription;
    match desc {
        D::CloseNotify => "close_notify",
        D::UnexpectedMessage => "unexpected_message",
        D::BadRecordMac => "bad_record_mac",
        D::DecryptionFailed => "decryption_failed",
        D::RecordOverflow => "record_overflow",
        D::DecompressionFailure => "decompression_failure",
        D::HandshakeFailure => "handshake_failure",
        D::NoCertificate => "no_certificate",
        D::BadCertificate => "bad_certificate",
        D::UnsupportedCertificate => "unsupported_certificate",
        D::CertificateRevoked => "certificate_revoked",
        D::CertificateExpired => "certificate_expired",
        D::CertificateUnknown => "certificate_unknown",
        D::IllegalParameter => "illegal_parameter",
        D::UnknownCa => "unknown_ca",
        D::AccessDenied => "access_denied",
        D::DecodeError => "decode_error",
        D::DecryptError => "decrypt_error",
        D::ProtocolVersion => "protocol_version",
        D::InsufficientSecurity => "insufficient_security",
        D::InternalError => "internal_error",
        D::InappropriateFallback => "inappropriate_fallback",
        D::UserCancelled => "user_canceled",
        D::NoRenegotiation => "no_renegotiation",
        D::MissingExtension => "missing_extension",
        D::UnsupportedExtension => "unsupported_extension",
        D::UnrecognizedName => "unrecognized_name",
        D::BadCertStatusResponse => "bad_certificate_status_response",
        D::UnknownPskIdentity => "unknown_psk_identity",
        D::CertificateRequired => "certificate_required",
        D::NoApplicationProtocol => "no_application_protocol",
        _ => "unknown",
    }
}

/// `fatal` or `warning` (anything but fatal is reported as a warning).
pub fn alert_level_name(level: TlsAlertSeverity) -> &'static str {
    if level == TlsAlertSeverity::Fatal {
        "fatal"
    } else {
        "warning"
    }
}

/// TLS handshake message names by type.
pub fn handshake_name(t: TlsHandshakeType) -> &'static str {
    type H = TlsHandshakeType;
    match t {
        H::HelloRequest => "hello_request",
        H::ClientHello => "client_hello",
        H::ServerHello => "server_hello",
        H::NewSessionTicket => "new_session_ticket",
        H::EndOfEarlyData => "end_of_early_data",
        H::EncryptedExtensions => "encrypted_extensions",
        H::Certificate => "certificate",
        H::ServerKeyExchange => "server_key_exchange",
        H::CertificateRequest => "certificate_request",
        H::ServerDone => "server_hello_done",
        H::CertificateVerify => "certificate_verify",
        H::ClientKeyExchange => "client_key_exchange",
        H::Finished => "finished",
        H::CertificateStatus => "certificate_status",
        H::KeyUpdate => "key_update",
        _ => "unknown",
    }
}

/// A TLS protocol version with a readable name (`TLS 1.2`; an unknown one as its number).
pub fn tls_version_name(v: TlsVersion) -> String {
    match v {
        TlsVersion::Ssl30 => "SSL 3.0".into(),
        TlsVersion::Tls10 => "TLS 1.0".into(),
        TlsVersion::Tls11 => "TLS 1.1".into(),
        TlsVersion::Tls12 => "TLS 1.2".into(),
        TlsVersion::Tls13 => "TLS 1.3".into(),
        other => format!("0x{:04x}", other.0),
    }
}

/// Query attributes kept per command.
pub const ATTRS_MAX: usize = 16;

/// One query attribute (MySQL 8.0.23+ `mysql_bind_param` / `query_attributes`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryAttr {
    /// Name (at most 64 characters).
    pub name: String,
    /// MySQL field type name (`string`, `longlong`, …) of its binary-protocol value.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Value as text (at most 64 characters, `…` when cut); `None` for SQL NULL.
    pub value: Option<String>,
}

/// MySQL field type names (`enum_field_types`), as the binary protocol tags values.
pub fn field_type_name(t: u8) -> &'static str {
    match t {
        0x00 => "decimal",
        0x01 => "tiny",
        0x02 => "short",
        0x03 => "long",
        0x04 => "float",
        0x05 => "double",
        0x06 => "null",
        0x07 => "timestamp",
        0x08 => "longlong",
        0x09 => "int24",
        0x0a => "date",
        0x0b => "time",
        0x0c => "datetime",
        0x0d => "year",
        0x0e => "newdate",
        0x0f => "varchar",
        0x10 => "bit",
        0xf5 => "json",
        0xf6 => "newdecimal",
        0xf7 => "enum",
        0xf8 => "set",
        0xf9 => "tiny_blob",
        0xfa => "medium_blob",
        0xfb => "long_blob",
        0xfc => "blob",
        0xfd => "var_string",
        0xfe => "string",
        0xff => "geometry",
        _ => "unknown",
    }
}

/// The plaintext length a record's size implies: exact for AEAD suites, a range for CBC (padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlainLen {
    /// Fewest plaintext bytes.
    pub lo: u16,
    /// Most plaintext bytes.
    pub hi: u16,
}

impl PlainLen {
    /// The size is known exactly.
    pub fn exact(self) -> bool {
        self.lo == self.hi
    }

    /// `n` plaintext bytes fit this record.
    pub fn fits(self, n: u16) -> bool {
        (self.lo..=self.hi).contains(&n)
    }
}

/// What an event says. Names follow `layer.kind` in reports (e.g. `mysql.err`).
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// TCP SYN.
    Syn,
    /// TCP SYN-ACK.
    SynAck,
    /// TCP FIN (first from this side).
    Fin,
    /// TCP RST.
    Rst,
    /// Bytes never captured.
    Gap {
        /// How many.
        bytes: u64,
    },
    /// The server greeting (HandshakeV10).
    Greeting {
        /// Server version string.
        version: String,
        /// Connection (thread) id.
        thread_id: u32,
        /// Capability flags (32 bits).
        capabilities: CapabilityFlags,
        /// MariaDB extended capabilities.
        mariadb_capabilities: u32,
        /// Default auth plugin.
        auth_plugin: String,
    },
    /// A greeting that is an ERR (e.g. 1130, host not allowed).
    GreetingErr {
        /// Error code.
        code: u16,
        /// Message.
        message: String,
    },
    /// SSLRequest: the client asks to switch to TLS.
    SslRequest {
        /// Client capability flags.
        capabilities: CapabilityFlags,
    },
    /// Handshake response (plaintext login, or inside TLS when decrypted).
    HandshakeResponse {
        /// User name.
        user: String,
        /// Default database, if any.
        database: Option<String>,
        /// Auth plugin, if any.
        auth_plugin: Option<String>,
        /// Client capability flags.
        capabilities: CapabilityFlags,
    },
    /// The server asks for another auth method.
    AuthSwitch {
        /// Plugin name.
        plugin: String,
    },
    /// Extra auth data from the server (caching_sha2 and friends).
    AuthMoreData {
        /// What it says, when known (`fast_auth_success`, `perform_full_authentication`,
        /// `public_key`).
        what: Option<&'static str>,
    },
    /// Auth data from the client after the handshake response (auth switch response, RSA
    /// public key request, password).
    AuthResponse {
        /// What it is (`auth_switch_response`, `public_key_request`, `password`).
        what: &'static str,
        /// Payload length.
        len: u32,
    },
    /// An EOF packet that is a response of its own (the end of a COM_FIELD_LIST, a
    /// COM_SET_OPTION reply); a result set's EOFs are in its `result_set`.
    Eof {
        /// Warnings.
        warnings: u16,
        /// Server status flags.
        status: StatusFlags,
    },
    /// The server answered a query with LOCAL INFILE: it asks for the client's file.
    LocalInfile {
        /// File name the server asks for.
        file: String,
    },
    /// The client's LOCAL INFILE data ended (its empty packet).
    InfileData {
        /// Bytes of file content sent.
        bytes: u64,
        /// Packets.
        packets: u64,
    },
    /// COM_BINLOG_DUMP(_GTID) was answered: the server streams replication events from here.
    BinlogStream,
    /// OK packet.
    Ok {
        /// Affected rows.
        affected_rows: u64,
        /// Server status flags.
        status: StatusFlags,
        /// It ended the login rather than a command.
        login: bool,
    },
    /// ERR packet.
    Err {
        /// Error code.
        code: u16,
        /// SQLSTATE.
        sqlstate: String,
        /// Message.
        message: String,
        /// Sent with no request pending (e.g. 4031 before an idle close).
        unsolicited: bool,
        /// It ended the login.
        login: bool,
    },
    /// A client command.
    Command {
        /// Command byte.
        cmd: Com,
        /// Statement id (COM_STMT_*).
        stmt_id: Option<u32>,
        /// Query text (COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB), truncated; for a COM_QUERY
        /// with query attributes, the SQL after them.
        text: Option<String>,
        /// Payload length.
        len: u32,
        /// Query attributes (CLIENT_QUERY_ATTRIBUTES) of a COM_QUERY or COM_STMT_EXECUTE, the
        /// first [`ATTRS_MAX`].
        attrs: Vec<QueryAttr>,
        /// The user a COM_CHANGE_USER switches to.
        user: Option<String>,
    },
    /// A prepared statement's OK (id, columns, params).
    StmtPrepared {
        /// Statement id.
        stmt_id: u32,
        /// Columns.
        columns: u16,
        /// Parameters.
        params: u16,
    },
    /// A result set finished.
    ResultSet {
        /// Columns.
        columns: u64,
        /// Rows.
        rows: u64,
        /// Another result follows.
        more: bool,
    },
    /// The MySQL decoder lost the packet framing (after a gap or on nonsense).
    Desync {
        /// Why.
        reason: &'static str,
    },
    /// It found the framing again.
    Resync,
    /// The TLS record framing was lost (a gap cut a record header).
    TlsDesync,
    /// Record framing found again at a slice that starts with a plausible record header.
    TlsResync,
    /// Bytes that are not a TLS record in a TLS stream.
    PlaintextInTls {
        /// Bytes seen (first 16, hex).
        hex: String,
        /// Recognised as a MySQL command packet (e.g. COM_QUIT).
        mysql: Option<Com>,
    },
    /// TLS ClientHello.
    ClientHello {
        /// Versions offered (supported_versions, else the legacy version).
        versions: Vec<TlsVersion>,
        /// Cipher suites offered (GREASE values left out).
        ciphers: Vec<TlsCipherSuiteID>,
        /// Server name (SNI).
        sni: Option<String>,
        /// ALPN protocols.
        alpn: Vec<String>,
        /// Key-share groups.
        groups: Vec<u16>,
        /// Client random (hex): the key log's key.
        random: String,
    },
    /// TLS ServerHello (or HelloRetryRequest).
    ServerHello {
        /// Negotiated version.
        version: TlsVersion,
        /// Cipher suite.
        cipher: TlsCipherSuiteID,
        /// Server random (hex).
        random: String,
        /// A HelloRetryRequest.
        retry: bool,
    },
    /// TLS Certificate (plaintext: TLS ≤ 1.2), first certificate of the chain.
    Certificate {
        /// Certificates in the chain.
        count: usize,
        /// Subject of the first.
        subject: String,
        /// Issuer of the first.
        issuer: String,
        /// Validity start (RFC 3339).
        not_before: String,
        /// Validity end (RFC 3339).
        not_after: String,
    },
    /// Another plaintext handshake message.
    Handshake {
        /// Handshake type.
        msg: TlsHandshakeType,
    },
    /// A handshake record after ChangeCipherSpec (TLS ≤ 1.2): encrypted, e.g. Finished.
    EncryptedHandshake {
        /// Record length.
        len: u16,
    },
    /// ChangeCipherSpec.
    ChangeCipherSpec,
    /// A plaintext alert.
    Alert {
        /// Warning or fatal.
        level: TlsAlertSeverity,
        /// Description.
        desc: TlsAlertDescription,
    },
    /// An alert record that is encrypted (TLS 1.2 keeps the content type visible).
    EncryptedAlert {
        /// Record length.
        len: u16,
    },
    /// An application-data record.
    AppData {
        /// Record length.
        len: u16,
        /// The plaintext length its size implies (exact when decrypted or AEAD; a range for
        /// CBC), once the version and cipher are known.
        plain: Option<PlainLen>,
        /// Decrypted with a key log (its MySQL is decoded from it).
        decrypted: bool,
    },
    /// What the last record before a FIN most likely was (AEAD sizes), marked inferred.
    InferredClose {
        /// `close_notify or alert` or `com_quit`.
        what: &'static str,
        /// Plaintext length the record size implies.
        inner_len: u16,
    },
}

impl Kind {
    /// The layer.
    pub fn layer(&self) -> Layer {
        use Kind::*;
        match self {
            Syn | SynAck | Fin | Rst | Gap { .. } => Layer::Tcp,
            Greeting { .. }
            | GreetingErr { .. }
            | SslRequest { .. }
            | HandshakeResponse { .. }
            | AuthSwitch { .. }
            | AuthMoreData { .. }
            | AuthResponse { .. }
            | Eof { .. }
            | LocalInfile { .. }
            | InfileData { .. }
            | BinlogStream
            | Ok { .. }
            | Err { .. }
            | Command { .. }
            | StmtPrepared { .. }
            | ResultSet { .. }
            | Desync { .. }
            | Resync => Layer::Mysql,
            _ => Layer::Tls,
        }
    }

    /// `layer.kind`, e.g. `mysql.com_query`, `tls.alert`, `tcp.fin`.
    pub fn name(&self) -> String {
        use Kind::*;
        let k: &str = match self {
            Syn => "tcp.syn",
            SynAck => "tcp.syn_ack",
            Fin => "tcp.fin",
            Rst => "tcp.rst",
            Gap { .. } => "tcp.gap",
            Greeting { .. } => "mysql.greeting",
            GreetingErr { .. } => "mysql.greeting_err",
            SslRequest { .. } => "mysql.ssl_request",
            HandshakeResponse { .. } => "mysql.handshake_response",
            AuthSwitch { .. } => "mysql.auth_switch",
            AuthMoreData { .. } => "mysql.auth_more_data",
            AuthResponse { .. } => "mysql.auth_response",
            Eof { .. } => "mysql.eof",
            LocalInfile { .. } => "mysql.local_infile",
            InfileData { .. } => "mysql.infile_data",
            BinlogStream => "mysql.binlog_stream",
            Ok { .. } => "mysql.ok",
            Err { .. } => "mysql.err",
            Command { cmd, .. } => return format!("mysql.{}", cmd.name()),
            StmtPrepared { .. } => "mysql.stmt_prepared",
            ResultSet { .. } => "mysql.result_set",
            Desync { .. } => "mysql.desync",
            Resync => "mysql.resync",
            TlsDesync => "tls.desync",
            TlsResync => "tls.resync",
            PlaintextInTls { .. } => "tls.plaintext",
            ClientHello { .. } => "tls.client_hello",
            ServerHello { retry: true, .. } => "tls.hello_retry_request",
            ServerHello { .. } => "tls.server_hello",
            Certificate { .. } => "tls.certificate",
            Handshake { msg } => return format!("tls.{}", handshake_name(*msg)),
            EncryptedHandshake { .. } => "tls.encrypted_handshake",
            ChangeCipherSpec => "tls.change_cipher_spec",
            Alert {
                desc: TlsAlertDescription::CloseNotify,
                ..
            } => "tls.close_notify",
            Alert { .. } => "tls.alert",
            EncryptedAlert { .. } => "tls.encrypted_alert",
            AppData { .. } => "tls.app_data",
            InferredClose { .. } => "tls.inferred_close",
        };
        k.to_string()
    }

    /// Short human text for the text report.
    pub fn brief(&self) -> String {
        use Kind::*;
        match self {
            Gap { bytes } => format!("gap {bytes} B"),
            Greeting {
                version, thread_id, ..
            } => format!("greeting {version} thread {thread_id}"),
            GreetingErr { code, message } => format!("greeting ERR {code} {message}"),
            HandshakeResponse { user, .. } => format!("login user {user}"),
            Ok { .. } => "OK".into(),
            Err {
                code,
                message,
                unsolicited,
                ..
            } => format!(
                "ERR {code} {message}{}",
                if *unsolicited { " (unsolicited)" } else { "" }
            ),
            Command {
                cmd, text: Some(t), ..
            } => format!("{} {t:?}", cmd.name().to_uppercase()),
            Command {
                cmd, user: Some(u), ..
            } => format!("{} {u}", cmd.name().to_uppercase()),
            LocalInfile { file } => format!("local_infile {file:?}"),
            InfileData { bytes, .. } => format!("infile data {bytes} B"),
            Command { cmd, .. } => cmd.name().to_uppercase(),
            ResultSet { rows, .. } => format!("result {rows} rows"),
            PlaintextInTls { hex, mysql } => match mysql {
                Some(m) => format!("plaintext {} in TLS ({hex})", m.name().to_uppercase()),
                None => format!("plaintext in TLS ({hex})"),
            },
            ServerHello {
                version, cipher, ..
            } => {
                format!(
                    "server_hello {} 0x{:04x}",
                    tls_version_name(*version),
                    cipher.0
                )
            }
            Alert { level, desc } => {
                format!("{} alert {}", alert_level_name(*level), alert_name(*desc))
            }
            EncryptedAlert { len } => format!("encrypted alert ({len} B)"),
            AppData { len, .. } => format!("app data {len} B"),
            InferredClose { what, inner_len } => format!("{what}? (inferred, {inner_len} B)"),
            other => other.name().split('.').nth(1).unwrap_or("").to_string(),
        }
    }

    /// Writes the event's detail fields into a JSON map.
    fn detail<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        use Kind::*;
        match self {
            Syn | SynAck | Fin | Rst | Resync | ChangeCipherSpec | TlsDesync | TlsResync
            | BinlogStream => Ok(()),
            AuthMoreData { what } => match what {
                Some(w) => m.serialize_entry("what", w),
                None => Ok(()),
            },
            AuthResponse { what, len } => {
                m.serialize_entry("what", what)?;
                m.serialize_entry("len", len)
            }
            Eof { warnings, status } => {
                m.serialize_entry("warnings", warnings)?;
                m.serialize_entry("status", &format!("0x{:04x}", status.bits()))
            }
            LocalInfile { file } => m.serialize_entry("file", file),
            InfileData { bytes, packets } => {
                m.serialize_entry("bytes", bytes)?;
                m.serialize_entry("packets", packets)
            }
            Gap { bytes } => m.serialize_entry("bytes", bytes),
            Greeting {
                version,
                thread_id,
                capabilities,
                mariadb_capabilities,
                auth_plugin,
            } => {
                m.serialize_entry("version", version)?;
                m.serialize_entry("thread_id", thread_id)?;
                m.serialize_entry("capabilities", &format!("0x{:08x}", capabilities.bits()))?;
                m.serialize_entry(
                    "mariadb_capabilities",
                    &format!("0x{mariadb_capabilities:08x}"),
                )?;
                let tls = capabilities.contains(CapabilityFlags::CLIENT_SSL);
                m.serialize_entry("tls_offered", &tls)?;
                m.serialize_entry("auth_plugin", auth_plugin)
            }
            GreetingErr { code, message } => {
                m.serialize_entry("code", code)?;
                m.serialize_entry("message", message)
            }
            SslRequest { capabilities } => {
                m.serialize_entry("capabilities", &format!("0x{:08x}", capabilities.bits()))
            }
            HandshakeResponse {
                user,
                database,
                auth_plugin,
                capabilities,
            } => {
                m.serialize_entry("user", user)?;
                m.serialize_entry("database", database)?;
                m.serialize_entry("auth_plugin", auth_plugin)?;
                m.serialize_entry("capabilities", &format!("0x{:08x}", capabilities.bits()))
            }
            AuthSwitch { plugin } => m.serialize_entry("plugin", plugin),
            Ok {
                affected_rows,
                status,
                login,
            } => {
                m.serialize_entry("affected_rows", affected_rows)?;
                m.serialize_entry("status", &format!("0x{:04x}", status.bits()))?;
                m.serialize_entry("login", login)
            }
            Err {
                code,
                sqlstate,
                message,
                unsolicited,
                login,
            } => {
                m.serialize_entry("code", code)?;
                m.serialize_entry("sqlstate", sqlstate)?;
                m.serialize_entry("message", message)?;
                m.serialize_entry("unsolicited", unsolicited)?;
                m.serialize_entry("login", login)
            }
            Command {
                cmd,
                stmt_id,
                text,
                len,
                attrs,
                user,
            } => {
                m.serialize_entry("command", cmd.name())?;
                m.serialize_entry("code", cmd)?;
                m.serialize_entry("len", len)?;
                if let Some(id) = stmt_id {
                    m.serialize_entry("stmt_id", id)?;
                }
                if let Some(t) = text {
                    m.serialize_entry("text", t)?;
                }
                if !attrs.is_empty() {
                    m.serialize_entry("query_attributes", attrs)?;
                }
                if let Some(u) = user {
                    m.serialize_entry("user", u)?;
                }
                Ok(())
            }
            StmtPrepared {
                stmt_id,
                columns,
                params,
            } => {
                m.serialize_entry("stmt_id", stmt_id)?;
                m.serialize_entry("columns", columns)?;
                m.serialize_entry("params", params)
            }
            ResultSet {
                columns,
                rows,
                more,
            } => {
                m.serialize_entry("columns", columns)?;
                m.serialize_entry("rows", rows)?;
                m.serialize_entry("more_results", more)
            }
            Desync { reason } => m.serialize_entry("reason", reason),
            PlaintextInTls { hex, mysql } => {
                m.serialize_entry("hex", hex)?;
                m.serialize_entry("mysql", &mysql.map(Com::name))
            }
            ClientHello {
                versions,
                ciphers,
                sni,
                alpn,
                groups,
                random,
            } => {
                let v: Vec<String> = versions.iter().map(|v| tls_version_name(*v)).collect();
                m.serialize_entry("versions", &v)?;
                let c: Vec<String> = ciphers.iter().map(|c| format!("0x{:04x}", c.0)).collect();
                m.serialize_entry("ciphers", &c)?;
                m.serialize_entry("sni", sni)?;
                m.serialize_entry("alpn", alpn)?;
                m.serialize_entry("key_share_groups", groups)?;
                m.serialize_entry("random", random)
            }
            ServerHello {
                version,
                cipher,
                random,
                retry,
            } => {
                m.serialize_entry("version", &tls_version_name(*version))?;
                m.serialize_entry("cipher", &format!("0x{:04x}", cipher.0))?;
                m.serialize_entry("cipher_name", &cipher_name(*cipher))?;
                m.serialize_entry("random", random)?;
                m.serialize_entry("hello_retry_request", retry)
            }
            Certificate {
                count,
                subject,
                issuer,
                not_before,
                not_after,
            } => {
                m.serialize_entry("chain", count)?;
                m.serialize_entry("subject", subject)?;
                m.serialize_entry("issuer", issuer)?;
                m.serialize_entry("not_before", not_before)?;
                m.serialize_entry("not_after", not_after)
            }
            Handshake { msg } => {
                m.serialize_entry("type", &msg.0)?;
                m.serialize_entry("name", handshake_name(*msg))
            }
            EncryptedHandshake { len } | EncryptedAlert { len } => m.serialize_entry("len", len),
            AppData { len, plain, .. } => {
                m.serialize_entry("len", len)?;
                match plain {
                    Some(p) if p.exact() => m.serialize_entry("plaintext_len", &p.lo),
                    Some(p) => m.serialize_entry("plaintext_len", &[p.lo, p.hi]),
                    None => Ok(()),
                }
            }
            Alert { level, desc } => {
                m.serialize_entry("level", alert_level_name(*level))?;
                m.serialize_entry("description", alert_name(*desc))?;
                m.serialize_entry("code", &desc.0)
            }
            InferredClose { what, inner_len } => {
                m.serialize_entry("probably", what)?;
                m.serialize_entry("plaintext_len", inner_len)?;
                m.serialize_entry("inferred", &true)
            }
        }
    }
}

/// IANA name of a cipher suite, or its number.
pub fn cipher_name(id: TlsCipherSuiteID) -> String {
    id.get_ciphersuite()
        .map_or_else(|| format!("0x{:04x}", id.0), |c| c.name.to_string())
}

/// Serialises a kind's detail as a JSON object, with `relayed_as` on a relayed request.
pub struct Detail<'a> {
    /// The event.
    pub kind: &'a Kind,
    /// For a request: the requests on the other leg of a proxy it was relayed as, `(conn,
    /// frame)` (written only when there are some).
    pub relayed_as: &'a [(u64, u64)],
}

#[derive(Serialize)]
struct RelayedAs {
    conn: u64,
    frame: u64,
}

impl Serialize for Detail<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.kind.detail(&mut m)?;
        if !self.relayed_as.is_empty() {
            let v: Vec<RelayedAs> = self
                .relayed_as
                .iter()
                .map(|&(conn, frame)| RelayedAs { conn, frame })
                .collect();
            m.serialize_entry("relayed_as", &v)?;
        }
        m.end()
    }
}
