//! What `--at` names: a log offset or a moment, and how moments are
//! written (RFC 3339 in UTC, or unix time).

use super::error::BackupError;

/// A restore point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The state after every record that ends at or before this offset.
    Offset(u64),
    /// The state the backup had received by this moment (unix ms).
    Time(u64),
}

impl std::str::FromStr for Target {
    type Err = BackupError;

    /// `offset:N` or a bare number is an offset; `ms:N` unix milliseconds;
    /// `unix:N` unix seconds; `YYYY-MM-DDTHH:MM:SS[.mmm]Z` a UTC moment.
    fn from_str(s: &str) -> Result<Target, BackupError> {
        let bad = || {
            BackupError::Usage(format!(
                "--at {s:?}: expected an offset (`offset:N` or `N`), `ms:UNIX_MS`, `unix:UNIX_SECONDS` \
                 or a UTC time like 2025-01-31T12:00:00Z"
            ))
        };
        let number = |t: &str| t.parse::<u64>().map_err(|_| bad());
        if let Some(n) = s.strip_prefix("offset:") {
            return Ok(Target::Offset(number(n)?));
        }
        if let Some(n) = s.strip_prefix("ms:") {
            return Ok(Target::Time(number(n)?));
        }
        if let Some(n) = s.strip_prefix("unix:") {
            return number(n)?.checked_mul(1000).map(Target::Time).ok_or_else(bad);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Target::Offset(number(s)?));
        }
        parse_rfc3339(s).map(Target::Time).ok_or_else(bad)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Offset(o) => write!(f, "offset {o}"),
            Target::Time(t) => write!(f, "{}", format_ms(*t)),
        }
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or with a space for `T`) as unix ms.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, mo, da) = (
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<u32>().ok()?,
        d.next()?.parse::<u32>().ok()?,
    );
    if d.next().is_some() || !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut t = hms.split(':');
    let (h, mi, se) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
    );
    if t.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<3}")[..3].parse::<u64>().ok()?
        }
        Some(_) => return None,
    };
    let days = u64::try_from(days_from_civil(y, mo, da)).ok()?;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_documented() {
        assert_eq!("4096".parse::<Target>().expect("offset"), Target::Offset(4096));
        assert_eq!("offset:8".parse::<Target>().expect("offset"), Target::Offset(8));
        assert_eq!(
            "ms:1700000000123".parse::<Target>().expect("ms"),
            Target::Time(1_700_000_000_123)
        );
        assert_eq!(
            "unix:1700000000".parse::<Target>().expect("s"),
            Target::Time(1_700_000_000_000)
        );
        assert_eq!(
            "2023-11-14T22:13:20Z".parse::<Target>().expect("time"),
            Target::Time(1_700_000_000_000)
        );
        assert_eq!(
            "2023-11-14T22:13:20.5Z".parse::<Target>().expect("time"),
            Target::Time(1_700_000_000_500)
        );
        for bad in [
            "",
            "-1",
            "offset:",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "unix:99999999999999999",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        for ms in [0, 951_782_400_000, 1_700_000_000_123, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339(&format_ms(ms)), Some(ms), "{}", format_ms(ms));
        }
    }
}
