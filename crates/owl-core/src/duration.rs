//! Human durations (`90s`, `30m`, `2h`, `1h 30m`) for flags, config and the API.

use std::time::Duration;

/// Parses a human duration. Bare numbers are refused so `--timeout 30` cannot silently mean
/// thirty seconds when the user meant minutes.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like 90s, 30m, 2h or 1h30m".into());
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{t}` has no unit; write it like {t}s, {t}m or {t}h"));
    }
    humantime::parse_duration(t).map_err(|e| format!("`{t}` is not a duration ({e}); write it like 90s, 30m, 2h or 1h30m"))
}

/// Formats a duration compactly (`1h 30m`, `250ms`).
pub fn format(d: Duration) -> String {
    if d.as_millis() == 0 {
        return "0s".into();
    }
    humantime::format_duration(if d.as_secs() >= 1 { Duration::from_secs(d.as_secs()) } else { d }).to_string()
}

/// Serde support for `Duration` fields written as human strings.
pub mod serde_human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde support for `Option<Duration>` written as human strings.
pub mod serde_human_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| super::parse(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn refuses_bare_numbers_and_garbage_with_the_fix() {
        assert!(parse("30").unwrap_err().contains("30s"));
        assert!(parse("soon").unwrap_err().contains("90s"));
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }
}
