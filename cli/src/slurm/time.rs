//! Slurm's time formats: parsing `-t`/`--time` and `--begin`, and printing durations and
//! timestamps as `squeue`, `sacct` and `scontrol` do.
//!
//! Semantics are copied from Slurm 22.05 `src/common/parse_time.c` (`time_str2secs`,
//! `time_str2mins`, `_is_valid_timespec`, `parse_time`, `secs2time_str`, `mins2time_str`,
//! `slurm_make_time_str`) and `src/squeue/print.c` (`_print_secs`, `_print_time`).
//! Every function is pure: "now" and the local UTC offset are parameters, so the output does
//! not depend on the machine's clock or `TZ` (deviation: Slurm asks `localtime_r`, which also
//! knows about daylight-saving changes between "now" and the parsed time; we use one offset).

/// Seconds in a day.
const DAY_SECS: i64 = 86_400;

/// `_is_valid_timespec` (parse_time.c): only digits, one `-` before any `:`, at most two `:`,
/// and enough numbers for the separators seen.
fn is_valid_timespec(s: &str) -> bool {
    let (mut digit, mut dash, mut colon) = (0, 0, 0);
    let mut already_digit = false;
    for c in s.chars() {
        match c {
            '0'..='9' => {
                if !already_digit {
                    digit += 1;
                    already_digit = true;
                }
            }
            '-' => {
                already_digit = false;
                dash += 1;
                if colon > 0 {
                    return false;
                }
            }
            ':' => {
                already_digit = false;
                colon += 1;
            }
            _ => return false,
        }
    }
    if digit == 0 || dash > 1 || colon > 2 {
        return false;
    }
    let need = if dash > 0 { colon + 2 } else { colon + 1 };
    colon == 0 || digit >= need
}

/// Reads a leading (optionally `-`) decimal number like `sscanf("%d")` would; `None` when the
/// text does not start with one or it overflows.
fn scan_int(s: &str) -> (Option<i64>, &str) {
    let bytes = s.as_bytes();
    let mut i = 0;
    let neg = bytes.first() == Some(&b'-');
    if neg {
        i = 1;
    }
    let start = i;
    let mut v: i64 = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        let Some(n) = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(bytes[i] - b'0')))
        else {
            return (None, &s[i..]);
        };
        v = n;
        i += 1;
    }
    if i == start {
        return (None, s);
    }
    (Some(if neg { -v } else { v }), &s[i..])
}

/// Scans `"%d<sep>%d<sep>..."` and returns the fields read before the first mismatch.
fn scan_fields(s: &str, seps: &[char]) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    let mut rest = s;
    for (i, sep) in std::iter::once(None)
        .chain(seps.iter().map(Some))
        .enumerate()
    {
        if let Some(sep) = sep {
            match rest.strip_prefix(*sep) {
                Some(r) => rest = r,
                None => break,
            }
        }
        let (v, r) = scan_int(rest);
        match v {
            Some(v) => out.push(v),
            // An overflowing number is an error; a missing one ends the scan, as in sscanf.
            None if r.len() != rest.len() || i == 0 => return None,
            None => break,
        }
        rest = r;
    }
    Some(out)
}

/// `time_str2secs` (parse_time.c): `Ok(None)` for `-1`, `INFINITE` or `UNLIMITED`.
///
/// Deviation: Slurm computes in a C `int` and lets large or negative values wrap; we reject
/// any total that is negative or does not fit in 32 bits.
pub fn parse_time_secs(s: &str) -> Result<Option<u64>, ()> {
    if s.is_empty() {
        return Err(());
    }
    if s == "-1" || s.eq_ignore_ascii_case("INFINITE") || s.eq_ignore_ascii_case("UNLIMITED") {
        return Ok(None);
    }
    if !is_valid_timespec(s) {
        return Err(());
    }
    let (d, h, m, sec) = if s.contains('-') {
        // days-[hours[:minutes[:seconds]]]
        let f = scan_fields(s, &['-', ':', ':']).ok_or(())?;
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        (g(0), g(1), g(2), g(3))
    } else {
        let f = scan_fields(s, &[':', ':']).ok_or(())?;
        let g = |i: usize| f.get(i).copied().unwrap_or(0);
        if f.len() == 3 {
            (0, g(0), g(1), g(2))
        } else {
            // minutes[:seconds]
            (0, 0, g(0), g(1))
        }
    };
    let total = d
        .checked_mul(DAY_SECS)
        .and_then(|t| t.checked_add(h.checked_mul(3600)?))
        .and_then(|t| t.checked_add(m.checked_mul(60)?))
        .and_then(|t| t.checked_add(sec))
        .ok_or(())?;
    if !(0..=i64::from(i32::MAX)).contains(&total) {
        return Err(());
    }
    Ok(Some(total as u64))
}

/// `time_str2mins` (parse_time.c): a time limit in minutes, seconds rounded up.
/// `Ok(None)` is unlimited (`-1`, `INFINITE`, `UNLIMITED`); `0` stays `Some(0)` here (sbatch
/// then treats a zero limit as unlimited, `arg_set_time_limit` in slurm_opt.c).
pub fn parse_time_limit(s: &str) -> Result<Option<u64>, ()> {
    Ok(parse_time_secs(s)?.map(|secs| secs.div_ceil(60)))
}

/// An elapsed time as `squeue %M` and a limit as `%l` print it (`_print_secs` in
/// squeue/print.c): `M:SS`, `H:MM:SS`, `D-HH:MM:SS`; `INVALID` when negative or over a year.
pub fn format_duration(secs: i64) -> String {
    if !(0..=365 * DAY_SECS).contains(&secs) {
        return "INVALID".into();
    }
    let (d, h, m, s) = (secs / DAY_SECS, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `secs2time_str` (parse_time.c), as `scontrol`/`sinfo` print times: always `HH:MM:SS`,
/// `D-HH:MM:SS` past a day, `UNLIMITED` for none, `INVALID` when negative.
pub fn format_secs_long(secs: Option<i64>) -> String {
    let Some(secs) = secs else {
        return "UNLIMITED".into();
    };
    if secs < 0 {
        return "INVALID".into();
    }
    let (d, h, m, s) = (secs / DAY_SECS, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `mins2time_str` (parse_time.c): a limit in minutes as `scontrol show job TimeLimit=` and
/// `sinfo %l` print it (`UNLIMITED`, `00:30:00`, `1-00:00:00`).
pub fn format_mins(minutes: Option<u64>) -> String {
    format_secs_long(minutes.map(|m| i64::try_from(m.saturating_mul(60)).unwrap_or(i64::MAX)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
/// `day` may run past the month's end; the result then rolls over as `mktime` does.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 + (day - 1)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Broken-down local time: (year, month 1-12, day, hour, minute, second).
type Tm = (i64, i64, i64, i64, i64, i64);

fn local_tm(unix: i64, utc_offset_secs: i32) -> Tm {
    let t = unix + i64::from(utc_offset_secs);
    let (y, mo, d) = civil_from_days(t.div_euclid(DAY_SECS));
    let s = t.rem_euclid(DAY_SECS);
    (y, mo, d, s / 3600, s / 60 % 60, s % 60)
}

fn mktime(tm: Tm, utc_offset_secs: i32) -> i64 {
    let (y, mo, d, h, mi, s) = tm;
    days_from_civil(y, mo, 1) * DAY_SECS + (d - 1) * DAY_SECS + h * 3600 + mi * 60 + s
        - i64::from(utc_offset_secs)
}

/// A timestamp in Slurm's standard form `2026-11-25T10:00:00` (`slurm_make_time_str` with
/// the default `%FT%T`), in local time given as an offset from UTC; `Unknown` for 0.
pub fn format_timestamp(unix_secs: i64, utc_offset_secs: i32) -> String {
    if unix_secs == 0 {
        return "Unknown".into();
    }
    let (y, mo, d, h, mi, s) = local_tm(unix_secs, utc_offset_secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// Why `--begin` did not parse: Slurm prints `Invalid time specification (pos=<pos>): <s>`
/// (parse_time.c) before the option's own error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginError {
    /// The byte offset Slurm reports.
    pub pos: usize,
}

/// Unit names of `now+<count><unit>` (`un[]` in parse_time.c), longest first.
const UNITS: [(&str, i64); 10] = [
    ("seconds", 1),
    ("second", 1),
    ("minutes", 60),
    ("minute", 60),
    ("hours", 3600),
    ("hour", 3600),
    ("days", DAY_SECS),
    ("day", DAY_SECS),
    ("weeks", 7 * DAY_SECS),
    ("week", 7 * DAY_SECS),
];

fn starts_with_ci(s: &[u8], word: &str) -> bool {
    s.len() >= word.len() && s[..word.len()].eq_ignore_ascii_case(word.as_bytes())
}

/// `_get_delta`: `<digits>[unit]` after the sign at `b[pos]`; returns (seconds, end).
fn get_delta(b: &[u8], pos: usize) -> Result<(i64, usize), BeginError> {
    let mut cnt: i64 = 0;
    let mut digits = 0;
    let mut i = pos + 1;
    while i < b.len() && b[i] != b'\n' {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if let Some((name, mult)) = UNITS.iter().find(|(n, _)| starts_with_ci(&b[i..], n)) {
            cnt = cnt.checked_mul(*mult).ok_or(BeginError { pos: i })?;
            i += name.len();
            break;
        }
        if b[i].is_ascii_digit() {
            cnt = cnt
                .checked_mul(10)
                .and_then(|c| c.checked_add(i64::from(b[i] - b'0')))
                .ok_or(BeginError { pos: i })?;
            digits += 1;
            i += 1;
            continue;
        }
        return Err(BeginError { pos: i });
    }
    if digits == 0 {
        return Err(BeginError { pos: i });
    }
    Ok((cnt, i))
}

fn two_digits(b: &[u8], i: usize) -> Option<i64> {
    let d = |k: usize| {
        b.get(k)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i64::from(c - b'0'))
    };
    Some(d(i)? * 10 + d(i + 1)?)
}

/// `_get_time`: `HH:MM[:SS] [AM|PM]` at `b[pos]`; returns (h, m, s, end).
fn get_time(b: &[u8], pos: usize) -> Result<(i64, i64, i64, usize), BeginError> {
    let err = |p: usize| BeginError { pos: p };
    let digit = |k: usize| {
        b.get(k)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i64::from(c - b'0'))
    };
    let mut i = pos;
    let mut hr = digit(i).ok_or(err(i))?;
    i += 1;
    if b.get(i) != Some(&b':') {
        hr = hr * 10 + digit(i).ok_or(err(i))?;
        i += 1;
    }
    if hr > 23 || b.get(i) != Some(&b':') {
        return Err(err(i));
    }
    i += 1;
    let min = two_digits(b, i).ok_or(err(i))?;
    i += 2;
    if min > 59 {
        return Err(err(i - 2));
    }
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        i += 1;
        sec = two_digits(b, i).ok_or(err(i))?;
        i += 2;
        if sec > 59 {
            return Err(err(i - 2));
        }
    }
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    if starts_with_ci(&b[i.min(b.len())..], "pm") {
        hr += 12;
        if hr == 24 {
            hr = 12;
        } else if hr > 23 {
            return Err(err(i));
        }
        i += 2;
    } else if starts_with_ci(&b[i.min(b.len())..], "am") {
        if hr == 12 {
            hr = 0;
        } else if hr > 11 {
            return Err(err(i));
        }
        i += 2;
    }
    Ok((hr, min, sec, i))
}

/// `_get_date`: `YYYY-MM-DD`, `MMDD[YY]`, `MM/DD[/YY]` or `MM.DD[.YY]` at `b[pos]`;
/// returns (month 1-12, day, year or None, end).
fn get_date(b: &[u8], pos: usize) -> Result<(i64, i64, Option<i64>, usize), BeginError> {
    let err = |p: usize| BeginError { pos: p };
    let digit = |k: usize| {
        b.get(k)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i64::from(c - b'0'))
    };
    let mut i = pos;
    if b.get(pos + 4) == Some(&b'-') && b.get(pos + 7) == Some(&b'-') {
        let mut yr = 0;
        for _ in 0..4 {
            yr = yr * 10 + digit(i).ok_or(err(i))?;
            i += 1;
        }
        i += 1;
        let mut mon = digit(i).ok_or(err(i))?;
        i += 1;
        if let Some(d) = digit(i) {
            mon = mon * 10 + d;
            i += 1;
        }
        if !(1..=12).contains(&mon) {
            return Err(err(i.saturating_sub(2)));
        }
        i += 1;
        let mut day = digit(i).ok_or(err(i))?;
        i += 1;
        if let Some(d) = digit(i) {
            day = day * 10 + d;
            i += 1;
        }
        if !(1..=31).contains(&day) {
            return Err(err(i.saturating_sub(2)));
        }
        return Ok((mon, day, Some(yr), i));
    }
    let mut mon = digit(i).ok_or(err(i))?;
    i += 1;
    if let Some(d) = digit(i) {
        mon = mon * 10 + d;
        i += 1;
    }
    if !(1..=12).contains(&mon) {
        return Err(err(i.saturating_sub(2)));
    }
    if matches!(b.get(i), Some(b'.' | b'/')) {
        i += 1;
    }
    let mut day = digit(i).ok_or(err(i))?;
    i += 1;
    if let Some(d) = digit(i) {
        day = day * 10 + d;
        i += 1;
    }
    if !(1..=31).contains(&day) {
        return Err(err(i.saturating_sub(2)));
    }
    if matches!(b.get(i), Some(b'.' | b'/')) {
        i += 1;
    }
    let mut year = None;
    if let Some(d) = digit(i) {
        let d2 = digit(i + 1).ok_or(err(i + 1))?;
        year = Some(2000 + d * 10 + d2);
        i += 2;
    }
    Ok((mon, day, year, i))
}

/// `parse_time(s, past = 0)` (parse_time.c) as `--begin` uses it: the Unix time `s` names,
/// looking forward from `now`. Forms: `now[+-]N[seconds|minutes|hours|days|weeks]`,
/// `HH:MM[:SS][AM|PM]`, `YYYY-MM-DD[THH:MM[:SS]]`, `MMDD[YY]`, `MM/DD[/YY]`, `MM.DD[.YY]`,
/// `today`, `tomorrow`, `midnight`, `noon`, `elevenses`, `fika`, `teatime`, `uts<secs>`,
/// combined with `T`, `-` or blanks. A time of day alone means its next occurrence.
pub fn parse_begin(s: &str, now: i64, utc_offset_secs: i32) -> Result<i64, BeginError> {
    let b = s.as_bytes();
    if starts_with_ci(b, "uts") {
        let v: i64 = s[3..].parse().map_err(|_| BeginError { pos: 0 })?;
        if v < 1_000_000 {
            return Err(BeginError { pos: 0 });
        }
        return Ok(v);
    }
    let now_tm = local_tm(now, utc_offset_secs);
    let (mut hour, mut minute, mut second) = (-1i64, -1i64, 0i64);
    let (mut month, mut mday, mut year) = (-1i64, -1i64, None::<i64>);
    let tomorrow = local_tm(now + DAY_SECS, utc_offset_secs);
    let mut pos = 0;
    while pos < b.len() && b[pos] != b'\n' {
        let c = b[pos];
        if c == b' ' || c == b'\t' || c == b'-' || c == b'T' {
            pos += 1;
            continue;
        }
        let rest = &b[pos..];
        let named: [(&str, Option<i64>); 5] = [
            ("midnight", Some(0)),
            ("noon", Some(12)),
            ("elevenses", Some(11)),
            ("fika", Some(15)),
            ("teatime", Some(16)),
        ];
        if starts_with_ci(rest, "today") {
            (month, mday, year) = (now_tm.1, now_tm.2, Some(now_tm.0));
            pos += 5;
            continue;
        }
        if starts_with_ci(rest, "tomorrow") {
            (month, mday, year) = (tomorrow.1, tomorrow.2, Some(tomorrow.0));
            pos += 8;
            continue;
        }
        if let Some((word, h)) = named.iter().find(|(w, _)| starts_with_ci(rest, w)) {
            (hour, minute, second) = (h.unwrap_or(0), 0, 0);
            pos += word.len();
            continue;
        }
        if starts_with_ci(rest, "now") {
            let mut i = pos + 3;
            let mut delta = 0;
            loop {
                match b.get(i) {
                    Some(b'+') | Some(b'-') => {
                        let (d, end) = get_delta(b, i)?;
                        delta = if b[i] == b'-' { -d } else { d };
                        i = end;
                        break;
                    }
                    Some(b' ' | b'\t') => i += 1,
                    None | Some(b'\n') => break,
                    Some(_) => return Err(BeginError { pos: i }),
                }
            }
            let later = local_tm(now.saturating_add(delta), utc_offset_secs);
            (year, month, mday) = (Some(later.0), later.1, later.2);
            (hour, minute, second) = (later.3, later.4, later.5);
            pos = i;
            continue;
        }
        if !c.is_ascii_digit() {
            return Err(BeginError { pos });
        }
        if b.get(pos + 1) == Some(&b':') || b.get(pos + 2) == Some(&b':') {
            let (h, m, s, end) = get_time(b, pos)?;
            (hour, minute, second) = (h, m, s);
            pos = end;
            continue;
        }
        let (mo, d, y, end) = get_date(b, pos)?;
        (month, mday) = (mo, d);
        if y.is_some() {
            year = y;
        }
        pos = end;
    }
    if hour == -1 && month == -1 {
        // Nothing specified: Slurm returns 0, which `--begin` rejects.
        return Err(BeginError { pos });
    }
    if hour == -1 {
        (hour, minute) = (0, 0);
    } else if month == -1 {
        let today_later = hour > now_tm.3 || (hour == now_tm.3 && minute > now_tm.4);
        let day = if today_later { now_tm } else { tomorrow };
        (month, mday, year) = (day.1, day.2, Some(day.0));
    }
    let year = year.unwrap_or_else(|| {
        let later = (month, mday, hour, minute) > (now_tm.1, now_tm.2, now_tm.3, now_tm.4);
        if later {
            now_tm.0
        } else {
            now_tm.0 + 1
        }
    });
    Ok(mktime(
        (year, month, mday, hour, minute, second),
        utc_offset_secs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_as_time_str2mins() {
        let cases: &[(&str, Result<Option<u64>, ()>)] = &[
            // "minutes"
            ("0", Ok(Some(0))),
            ("30", Ok(Some(30))),
            // "minutes:seconds", seconds round up
            ("0:30", Ok(Some(1))),
            ("10:00", Ok(Some(10))),
            ("10:01", Ok(Some(11))),
            // "hours:minutes:seconds"
            ("1:00:00", Ok(Some(60))),
            ("01:30:59", Ok(Some(91))),
            // "days-hours"
            ("1-0", Ok(Some(1440))),
            ("2-12", Ok(Some(3600))),
            // "days-hours:minutes"
            ("1-02:30", Ok(Some(1590))),
            // "days-hours:minutes:seconds"
            ("1-00:00:01", Ok(Some(1441))),
            // "days-" alone is accepted by _is_valid_timespec and sscanf
            ("3-", Ok(Some(4320))),
            // unlimited
            ("-1", Ok(None)),
            ("INFINITE", Ok(None)),
            ("unlimited", Ok(None)),
            // garbage
            ("", Err(())),
            ("1h", Err(())),
            (":30", Err(())),
            ("1:", Err(())),
            ("1:2:3:4", Err(())),
            ("1-2-3", Err(())),
            ("1:2-3", Err(())),
            ("1-:30", Err(())),
            (" 5", Err(())),
            ("inf", Err(())),
            // overflow: rejected rather than wrapped
            ("99999999999999999999", Err(())),
            ("3000000000", Err(())),
            ("-5", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time_limit(input), *want, "{input:?}");
        }
    }

    #[test]
    fn durations_as_squeue_prints_them() {
        assert_eq!(format_duration(0), "0:00");
        assert_eq!(format_duration(65), "1:05");
        assert_eq!(format_duration(3600), "1:00:00");
        assert_eq!(format_duration(86_400 + 61), "1-00:01:01");
        assert_eq!(format_duration(-1), "INVALID");
        assert_eq!(format_duration(366 * 86_400), "INVALID");
        assert_eq!(format_mins(Some(30)), "00:30:00");
        assert_eq!(format_mins(Some(1440)), "1-00:00:00");
        assert_eq!(format_mins(None), "UNLIMITED");
        assert_eq!(format_secs_long(Some(-3)), "INVALID");
    }

    #[test]
    fn timestamps_in_iso_local_time() {
        // 2026-11-25T10:00:00Z
        let t = 1_795_600_800;
        assert_eq!(format_timestamp(t, 0), "2026-11-25T10:00:00");
        assert_eq!(format_timestamp(t, 3600), "2026-11-25T11:00:00");
        assert_eq!(format_timestamp(t, -11 * 3600), "2026-11-24T23:00:00");
        assert_eq!(format_timestamp(0, 0), "Unknown");
        assert_eq!(format_timestamp(951_782_400, 0), "2000-02-29T00:00:00");
    }

    #[test]
    fn begin_times_as_parse_time() {
        // now = 2026-11-25T10:00:00 local (UTC+1)
        let off = 3600;
        let now = 1_795_600_800 - 3600;
        let at = |s: &str| parse_begin(s, now, off).map(|t| format_timestamp(t, off));
        assert_eq!(at("now+1hour").unwrap(), "2026-11-25T11:00:00");
        assert_eq!(at("now+90").unwrap(), "2026-11-25T10:01:30");
        assert_eq!(at("now+2days").unwrap(), "2026-11-27T10:00:00");
        assert_eq!(at("now-1minute").unwrap(), "2026-11-25T09:59:00");
        assert_eq!(at("16:00").unwrap(), "2026-11-25T16:00:00");
        assert_eq!(at("09:30:15").unwrap(), "2026-11-26T09:30:15");
        assert_eq!(at("4:00pm").unwrap(), "2026-11-25T16:00:00");
        assert_eq!(at("2027-01-02").unwrap(), "2027-01-02T00:00:00");
        assert_eq!(at("2027-01-02T03:04:05").unwrap(), "2027-01-02T03:04:05");
        assert_eq!(at("2027-01-02T03:04").unwrap(), "2027-01-02T03:04:00");
        assert_eq!(at("midnight").unwrap(), "2026-11-26T00:00:00");
        assert_eq!(at("noon").unwrap(), "2026-11-25T12:00:00");
        assert_eq!(at("teatime").unwrap(), "2026-11-25T16:00:00");
        assert_eq!(at("tomorrow").unwrap(), "2026-11-26T00:00:00");
        assert_eq!(at("today").unwrap(), "2026-11-25T00:00:00");
        assert_eq!(at("tomorrow noon").unwrap(), "2026-11-26T12:00:00");
        // MMDD without a year: the next such date
        assert_eq!(at("0105").unwrap(), "2027-01-05T00:00:00");
        assert_eq!(at("12/24").unwrap(), "2026-12-24T00:00:00");
        assert_eq!(at("12/24/27").unwrap(), "2027-12-24T00:00:00");
        assert_eq!(parse_begin("uts1800000000", now, off), Ok(1_800_000_000));
        assert!(at("garbage").is_err());
        assert!(at("25:00").is_err());
        assert!(at("now+").is_err());
        assert!(at("now+3fortnights").is_err());
        assert!(at("").is_err());
        assert!(at("2027-13-01").is_err());
    }
}
