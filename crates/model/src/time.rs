//! Wall-clock times as alerts show them (UTC), in Falco's formats.

use time::OffsetDateTime;

fn utc(ns_epoch: u64) -> OffsetDateTime {
    // u64 nanoseconds end in 2554, well inside what OffsetDateTime holds.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns_epoch))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `HH:MM:SS.nnnnnnnnn`, Falco's `%evt.time`.
pub fn format_time(ns_epoch: u64) -> String {
    let t = utc(ns_epoch);
    format!(
        "{:02}:{:02}:{:02}.{:09}",
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// `YYYY-MM-DD HH:MM:SS.nnnnnnnnn`, Falco's `%evt.datetime`.
pub fn format_datetime(ns_epoch: u64) -> String {
    let t = utc(ns_epoch);
    format!(
        "{:04}-{:02}-{:02} {}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        format_time(ns_epoch)
    )
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, the JSON alert's `time`.
pub fn format_iso8601(ns_epoch: u64) -> String {
    format_datetime(ns_epoch).replacen(' ', "T", 1) + "Z"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_in_falcos_shapes() {
        // 2024-02-29 23:59:58.000000042 UTC: a leap day, just before midnight.
        let ns = 1_709_251_198_000_000_042;
        assert_eq!(format_time(ns), "23:59:58.000000042");
        assert_eq!(format_datetime(ns), "2024-02-29 23:59:58.000000042");
        assert_eq!(format_iso8601(ns), "2024-02-29T23:59:58.000000042Z");
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000000000Z");
    }

    /// The engine's own calendar code checked these before it moved here.
    #[test]
    fn formats_times() {
        // 2023-05-25T13:44:05.478445995Z
        let t = 1_685_022_245_478_445_995;
        assert_eq!(format_iso8601(t), "2023-05-25T13:44:05.478445995Z");
        assert_eq!(format_time(t), "13:44:05.478445995");
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00.000000000");
    }
}
