//! Capture timestamps: nanoseconds since the Unix epoch, with RFC 3339 formatting.

use std::fmt;

/// A capture timestamp in nanoseconds since 1970-01-01T00:00:00Z.
///
/// Signed so that differences and bogus pre-1970 values stay representable; files carry
/// microsecond or nanosecond (pcapng: any) resolution and all of it is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

const NS_PER_SEC: i64 = 1_000_000_000;

impl Timestamp {
    /// Builds a timestamp from whole seconds and nanoseconds, saturating on overflow.
    pub fn from_parts(secs: i64, nanos: i64) -> Self {
        Timestamp(secs.saturating_mul(NS_PER_SEC).saturating_add(nanos))
    }

    /// Seconds (as f64) from `earlier` to `self`; negative when `self` is earlier.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0.saturating_sub(earlier.0)) as f64 / NS_PER_SEC as f64
    }

    /// Nanoseconds from `earlier` to `self`, saturating.
    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// An RFC 3339 rendering in UTC with nanoseconds, e.g. `2026-11-24T08:52:55.123456789Z`.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }
}

/// Display adapter returned by [`Timestamp::rfc3339`].
pub struct Rfc3339(Timestamp);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0 .0;
        let secs = ns.div_euclid(NS_PER_SEC);
        let frac = ns.rem_euclid(NS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
///
/// Howard Hinnant's `civil_from_days`; exact for the whole i64 day range we can produce.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            Timestamp(0).rfc3339().to_string(),
            "1970-01-01T00:00:00.000000000Z"
        );
        // 2000-02-29 (leap day) 12:34:56.000000789
        let t = Timestamp::from_parts(951_827_696, 789);
        assert_eq!(t.rfc3339().to_string(), "2000-02-29T12:34:56.000000789Z");
        // before the epoch
        assert_eq!(
            Timestamp(-1).rfc3339().to_string(),
            "1969-12-31T23:59:59.999999999Z"
        );
        // far future, like the bogus frame in mysql-ssl-tls10.pcapng
        let t = Timestamp::from_parts(2_937_600_000, 0);
        assert_eq!(t.rfc3339().to_string(), "2063-02-02T00:00:00.000000000Z");
    }

    #[test]
    fn differences() {
        let a = Timestamp::from_parts(10, 500_000_000);
        let b = Timestamp::from_parts(12, 0);
        assert_eq!(b.nanos_since(a), 1_500_000_000);
        assert!((b.secs_since(a) - 1.5).abs() < 1e-12);
    }
}

/// Parses a command-line duration (seconds or milliseconds): a finite number from 0 to 10^9.
/// NaN, infinities and negative values are refused with a message, so that no later
/// conversion can panic or wrap.
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!(
            "{s:?} must be a finite number from 0 to 1000000000"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod parse_tests {
    #[test]
    fn durations_refuse_nan_infinity_and_negatives() {
        assert_eq!(super::parse_secs("2.5"), Ok(2.5));
        for bad in ["NaN", "nan", "inf", "-1", "1e300", "x", ""] {
            assert!(super::parse_secs(bad).is_err(), "{bad}");
        }
    }
}

/// A bound of a `--since`/`--until` time filter, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeBound {
    /// Seconds from the capture's start (`10`, `10.5`, `+5s`, `+2m`, `+1h`, `+250ms`).
    Offset(f64),
    /// An absolute instant (RFC 3339: `2026-11-24T10:20:32Z`, `2026-11-24T11:20:32.5+01:00`).
    At(Timestamp),
    /// Seconds before the capture's last frame (`-30s`, `-2m`): the driver reads the end first
    /// and turns it into [`TimeBound::At`] with [`TimeBound::with_end`].
    BeforeEnd(f64),
}

impl TimeBound {
    /// Seconds from `origin` (the capture's start), computed like [`Timestamp::secs_since`] so
    /// that an instant and the equivalent offset select the same frames.
    pub fn offset_from(self, origin: Timestamp) -> f64 {
        match self {
            TimeBound::Offset(s) => s,
            TimeBound::At(ts) => ts.secs_since(origin),
            // Not turned into an instant (no end known): nothing is before it.
            TimeBound::BeforeEnd(_) => f64::NEG_INFINITY,
        }
    }

    /// The bound once the capture's last frame is known: `-30s` becomes that frame's time less
    /// 30 s; the others stay.
    pub fn with_end(self, end: Timestamp) -> TimeBound {
        match self {
            TimeBound::BeforeEnd(s) => {
                TimeBound::At(Timestamp(end.0.saturating_sub((s * 1e9) as i64)))
            }
            other => other,
        }
    }

    /// Relative to the end (`-30s`).
    pub fn needs_end(self) -> bool {
        matches!(self, TimeBound::BeforeEnd(_))
    }
}

/// Nanoseconds since the epoch of an RFC 3339 instant (`Z` or an offset), or of a date and
/// time without one, read in the local zone as a ProxySQL or application log writes it
/// (`2026-11-24 10:20:32.5`).
fn parse_instant(t: &str) -> Result<i64, String> {
    let has_zone = t.ends_with(['Z', 'z'])
        || t.rsplit_once(['+', '-']).is_some_and(|(head, tail)| {
            head.contains(':') && tail.len() == 5 && tail.as_bytes().get(2) == Some(&b':')
        });
    let ts = if has_zone {
        t.parse::<jiff::Timestamp>()
            .map_err(|e| format!("is not an RFC 3339 time ({e})"))?
    } else {
        let civil = t
            .parse::<jiff::civil::DateTime>()
            .map_err(|e| format!("is not a date and time ({e})"))?;
        civil
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .map_err(|e| format!("is not a time in the local zone ({e})"))?
            .timestamp()
    };
    i64::try_from(ts.as_nanosecond()).map_err(|_| "is out of range".to_string())
}

/// Parses a time filter bound: seconds from the capture's start (`10`, `+5s`, `+2m`, `+1h`,
/// `+250ms`), an RFC 3339 instant with `Z` or an offset and optional fractional seconds, or a
/// date and time without a zone (`2026-11-24 10:20:32`, read in the local zone).
/// Times before the end (`-30s`) are refused: the end is unknown until the capture is read.
pub fn parse_bound(s: &str) -> Result<TimeBound, String> {
    let t = s.trim();
    if let Some(before) = t.strip_prefix('-') {
        return match parse_bound(before) {
            Ok(TimeBound::Offset(secs)) if !before.starts_with(['+', '-']) => {
                Ok(TimeBound::BeforeEnd(secs))
            }
            _ => Err(format!(
                "{s:?}: give seconds before the capture's end (-30s, -2m, -250ms)"
            )),
        };
    }
    if t.contains(['T', 't', ' ']) && t.contains(':') {
        let ns = parse_instant(t).map_err(|e| format!("{s:?} {e}"))?;
        return Ok(TimeBound::At(Timestamp(ns)));
    }
    let body = t.strip_prefix('+').unwrap_or(t);
    let (num, scale) = if let Some(n) = body.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = body.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = body.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = body.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (body, 1.0)
    };
    let secs = parse_secs(num).map_err(|e| {
        format!(
            "{e}: give seconds from the capture's start (10, +5s, +2m, +1h, +250ms) or an \
             RFC 3339 time (2026-11-24T10:20:32Z)"
        )
    })? * scale;
    if secs > 1e9 {
        return Err(format!("{s:?} is more than 10^9 seconds"));
    }
    Ok(TimeBound::Offset(secs))
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn offsets_and_units() {
        assert_eq!(parse_bound("10"), Ok(TimeBound::Offset(10.0)));
        assert_eq!(parse_bound("+5s"), Ok(TimeBound::Offset(5.0)));
        assert_eq!(parse_bound("+2m"), Ok(TimeBound::Offset(120.0)));
        assert_eq!(parse_bound("1h"), Ok(TimeBound::Offset(3600.0)));
        assert_eq!(parse_bound("+250ms"), Ok(TimeBound::Offset(0.25)));
        assert_eq!(parse_bound("-30s"), Ok(TimeBound::BeforeEnd(30.0)));
        assert_eq!(parse_bound("-2m"), Ok(TimeBound::BeforeEnd(120.0)));
        let end = Timestamp(100 * NS_PER_SEC);
        assert_eq!(
            TimeBound::BeforeEnd(30.0).with_end(end),
            TimeBound::At(Timestamp(70 * NS_PER_SEC))
        );
        assert_eq!(TimeBound::Offset(3.0).with_end(end), TimeBound::Offset(3.0));
        for bad in [
            "-+5s",
            "--5",
            "-2026-11-24T10:20:32Z",
            "x",
            "",
            "+",
            "NaN",
            "5d",
            "1e9h",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_bound(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let z = parse_bound("2026-11-24T10:20:32Z");
        let plus = parse_bound("2026-11-24T11:20:32+01:00");
        assert_eq!(z, plus);
        let Ok(TimeBound::At(ts)) = z else {
            panic!("{z:?}")
        };
        assert_eq!(ts.rfc3339().to_string(), "2026-11-24T10:20:32.000000000Z");
        let Ok(TimeBound::At(f)) = parse_bound("2026-11-24T10:20:32.000123456Z") else {
            panic!()
        };
        assert_eq!(f.nanos_since(ts), 123_456);
        assert!((TimeBound::At(f).offset_from(ts) - 0.000_123_456).abs() < 1e-12);
    }
}

/// How human-readable output shows a capture time; the names follow tcpdump's `-t` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeStyle {
    /// Time of day, `10:20:31.142926` (tcpdump's default); the date is said once, in the
    /// header, and shown on every time when the capture spans midnight.
    #[default]
    Clock,
    /// Date and time, `2026-11-24 10:20:31.142926` (tcpdump `-tttt`).
    Date,
    /// Seconds since the Unix epoch, `1764066031.142926` (tcpdump `-tt`).
    Epoch,
    /// Seconds since the capture's first frame, `2.902360` (tcpdump `-ttttt`).
    Offset,
}

/// Formats capture times for people: a style, a zone (the local one or UTC) and the capture's
/// first frame (for [`TimeStyle::Offset`]). Display only: no verdict depends on it.
#[derive(Clone, Debug)]
pub struct Clock {
    style: TimeStyle,
    zone: jiff::tz::TimeZone,
    utc: bool,
    origin: Timestamp,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(TimeStyle::Clock, true)
    }
}

impl Clock {
    /// `style` in UTC (`utc`) or in the local zone (`TZ`, else `/etc/localtime`; UTC when
    /// neither can be read).
    pub fn new(style: TimeStyle, utc: bool) -> Clock {
        let zone = if utc {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::try_system().unwrap_or_else(|e| {
                tracing::warn!("local time zone unknown ({e}); times are UTC");
                jiff::tz::TimeZone::UTC
            })
        };
        Clock {
            style,
            zone,
            utc,
            origin: Timestamp::default(),
        }
    }

    /// The same clock, counting offsets from `origin` (the capture's first frame); with
    /// [`TimeStyle::Clock`], times carry their date when `end` is on another day.
    pub fn with_span(mut self, origin: Timestamp, end: Timestamp) -> Clock {
        self.origin = origin;
        if self.style == TimeStyle::Clock && self.civil(origin).date() != self.civil(end).date() {
            self.style = TimeStyle::Date;
        }
        self
    }

    /// The style in use.
    pub fn style(&self) -> TimeStyle {
        self.style
    }

    fn civil(&self, ts: Timestamp) -> jiff::civil::DateTime {
        // i64 nanoseconds (years 1677-2262) are always within jiff's range.
        let t = jiff::Timestamp::from_nanosecond(i128::from(ts.0)).unwrap_or_default();
        self.zone.to_offset_info(t).offset().to_datetime(t)
    }

    /// `ts` in this clock's style, to the microsecond, as tcpdump prints times.
    pub fn at(&self, ts: Timestamp) -> String {
        match self.style {
            TimeStyle::Clock => {
                let d = self.civil(ts);
                format!(
                    "{:02}:{:02}:{:02}.{:06}",
                    d.hour(),
                    d.minute(),
                    d.second(),
                    d.subsec_nanosecond() / 1000
                )
            }
            TimeStyle::Date => self.date_time(ts),
            TimeStyle::Epoch => {
                let a = ts.0.unsigned_abs();
                let ns = NS_PER_SEC.unsigned_abs();
                let sign = if ts.0 < 0 { "-" } else { "" };
                format!("{sign}{}.{:06}", a / ns, a % ns / 1000)
            }
            TimeStyle::Offset => format!("{:.6}", ts.secs_since(self.origin)),
        }
    }

    /// `ts` with its date and zone whatever the style: `2026-11-24 10:20:31.142926 UTC`, or
    /// `2026-11-24 11:20:31.142926 CET (+01:00)` in a local zone.
    pub fn full(&self, ts: Timestamp) -> String {
        format!("{} {}", self.date_time(ts), self.zone_name(ts))
    }

    /// `2026-11-24 10:20:31.142926` in this clock's zone.
    fn date_time(&self, ts: Timestamp) -> String {
        let d = self.civil(ts);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.subsec_nanosecond() / 1000
        )
    }

    /// The zone at `ts`: `UTC`, or its abbreviation and offset (`CET (+01:00)`).
    pub fn zone_name(&self, ts: Timestamp) -> String {
        if self.utc {
            return "UTC".into();
        }
        let t = jiff::Timestamp::from_nanosecond(i128::from(ts.0)).unwrap_or_default();
        let info = self.zone.to_offset_info(t);
        let off = info.offset();
        if off == jiff::tz::Offset::UTC && info.abbreviation() == "UTC" {
            return "UTC".into();
        }
        let secs = off.seconds();
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.unsigned_abs();
        format!(
            "{} ({sign}{:02}:{:02})",
            info.abbreviation(),
            a / 3600,
            a % 3600 / 60
        )
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    // 2026-11-24T10:20:31.142926789Z
    const T: Timestamp = Timestamp(1_795_515_631_142_926_789);

    #[test]
    fn styles_in_utc() {
        let c = Clock::new(TimeStyle::Clock, true).with_span(T, T);
        assert_eq!(c.at(T), "10:20:31.142926");
        assert_eq!(c.full(T), "2026-11-24 10:20:31.142926 UTC");
        let later = Timestamp(T.0 + 2_500_000_000);
        let c = Clock::new(TimeStyle::Offset, true).with_span(T, later);
        assert_eq!(c.at(later), "2.500000");
        assert_eq!(
            Clock::new(TimeStyle::Epoch, true).at(T),
            "1795515631.142926"
        );
        assert_eq!(
            Clock::new(TimeStyle::Date, true).at(T),
            "2026-11-24 10:20:31.142926"
        );
    }

    #[test]
    fn a_capture_across_midnight_shows_dates() {
        let next_day = Timestamp(T.0 + 14 * 3600 * NS_PER_SEC);
        let c = Clock::new(TimeStyle::Clock, true).with_span(T, next_day);
        assert_eq!(c.style(), TimeStyle::Date);
        assert_eq!(c.at(next_day), "2026-11-25 00:20:31.142926");
    }

    #[test]
    fn rfc3339_and_the_rfc3339_formatter_agree() {
        let c = Clock::new(TimeStyle::Date, true);
        let r = T.rfc3339().to_string();
        assert_eq!(r, "2026-11-24T10:20:31.142926789Z");
        assert_eq!(c.at(T).replace(' ', "T"), r[..26]);
    }

    #[test]
    fn pre_epoch_and_extreme_times_do_not_panic() {
        for ns in [i64::MIN, -1, 0, i64::MAX] {
            let c = Clock::new(TimeStyle::Clock, true);
            let _ = (c.at(Timestamp(ns)), c.full(Timestamp(ns)));
            let _ = Clock::new(TimeStyle::Epoch, true).at(Timestamp(ns));
        }
        assert_eq!(
            Clock::new(TimeStyle::Epoch, true).at(Timestamp(-1_500_000)),
            "-0.001500"
        );
    }
}
