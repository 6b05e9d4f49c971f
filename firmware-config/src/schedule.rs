//! Listening schedules: always, or windows whose ends are `sunrise`, `sunset` or a local
//! time, each optionally shifted (`sunrise-30m`, `sunset+1h30m`, `05:00`).
//!
//! Sun times come from the `sunrise` crate for the station's coordinates and a date.
//! Overlap checks compare windows whose ends are both sun-relative (over a year, every
//! week) or both fixed times; a window mixing the two kinds is compared with nothing,
//! because that needs the time zone's offset on each date.

use chrono::{NaiveDate, Offset, Timelike};

use crate::station::Location;

/// What a time is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Sunrise at the station.
    Sunrise,
    /// Sunset at the station.
    Sunset,
    /// Local midnight (a fixed time of day).
    Midnight,
}

/// A time of day: an anchor and an offset in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpec {
    /// The anchor.
    pub anchor: Anchor,
    /// Minutes after (negative: before) the anchor.
    pub offset_min: i32,
}

/// A listening window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub start: TimeSpec,
    /// End (before the start: the window crosses midnight).
    pub end: TimeSpec,
}

/// When the agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Day and night.
    Always,
    /// Within these windows.
    Windows(Vec<Window>),
}

/// `1h30m`, `45m`, `2h` → minutes.
fn duration_min(text: &str) -> Option<i32> {
    let mut total = 0i32;
    let mut number = String::new();
    let mut seen = false;
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' if !number.is_empty() => {
                let n: i32 = number.parse().ok()?;
                total = total.checked_add(if c == 'h' { n.checked_mul(60)? } else { n })?;
                number.clear();
                seen = true;
            }
            _ => return None,
        }
    }
    (seen && number.is_empty()).then_some(total)
}

impl TimeSpec {
    /// Parses `sunrise`, `sunset` or `HH:MM`, optionally followed by `+` or `-` and a
    /// duration such as `30m`, `2h` or `1h15m`.
    ///
    /// # Errors
    /// The reason, with the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a time (sunrise, sunset or HH:MM, optionally ±offset like sunrise-30m or sunset+1h30m)"
            )
        };
        let t = text.trim();
        let split = t.find(['+', '-']).unwrap_or(t.len());
        let (base, offset) = t.split_at(split);
        let offset_min = match offset.chars().next() {
            None => 0,
            Some(sign) => {
                let m = duration_min(&offset[1..]).ok_or_else(bad)?;
                if sign == '-' { -m } else { m }
            }
        };
        if offset_min.abs() > 12 * 60 {
            return Err(format!("`{text}`: offsets beyond 12 h are not allowed"));
        }
        let (anchor, base_min) = match base {
            "sunrise" => (Anchor::Sunrise, 0),
            "sunset" => (Anchor::Sunset, 0),
            hhmm => {
                let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
                let (h, m): (i32, i32) =
                    (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
                if !(0..24).contains(&h) || !(0..60).contains(&m) || hhmm.len() != 5 {
                    return Err(bad());
                }
                (Anchor::Midnight, h * 60 + m)
            }
        };
        Ok(Self {
            anchor,
            offset_min: base_min + offset_min,
        })
    }

    /// Whether the time depends on the sun.
    pub fn is_solar(self) -> bool {
        self.anchor != Anchor::Midnight
    }

    /// Minutes after UTC midnight on `date` at `location` (sun-relative times only).
    fn utc_minutes(self, location: Location, date: NaiveDate) -> Option<i32> {
        let event = match self.anchor {
            Anchor::Sunrise => sunrise::SolarEvent::Sunrise,
            Anchor::Sunset => sunrise::SolarEvent::Sunset,
            Anchor::Midnight => return None,
        };
        let coord = sunrise::Coordinates::new(location.latitude, location.longitude)?;
        let at = sunrise::SolarDay::new(coord, date).event_time(event);
        let day_shift = (at.date_naive() - date).num_days() as i32;
        Some(day_shift * 1440 + (at.hour() * 60 + at.minute()) as i32 + self.offset_min)
    }
}

impl TimeSpec {
    /// Minutes after local midnight of `date`: sun-relative times at `location` (their
    /// UTC time moved by `offset_min`, the zone's offset from UTC now), fixed times as
    /// they are.
    fn local_minutes(
        self,
        location: Option<Location>,
        date: NaiveDate,
        offset_min: i32,
    ) -> Option<i32> {
        match self.anchor {
            Anchor::Midnight => Some(self.offset_min),
            _ => Some(self.utc_minutes(location?, date)? + offset_min),
        }
    }
}

impl Schedule {
    /// Whether the station listens at `at`. Fixed `HH:MM` ends are clock times in
    /// `zone` (the station's time zone), compared with the local time at `at`, so a
    /// window keeps its clock times across daylight-saving changes; sun-relative ends are
    /// computed for the station's `location` on the local date. A window whose end comes
    /// before its start spans midnight.
    pub fn is_active<Z: chrono::TimeZone>(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        location: Option<Location>,
        zone: &Z,
    ) -> bool {
        let Schedule::Windows(windows) = self else {
            return true;
        };
        let local = at.with_timezone(zone);
        let offset_min = local.offset().fix().local_minus_utc() / 60;
        let date = local.date_naive();
        let now = (local.hour() * 60 + local.minute()) as i32;
        windows.iter().any(|w| {
            let (Some(s), Some(e)) = (
                w.start.local_minutes(location, date, offset_min),
                w.end.local_minutes(location, date, offset_min),
            ) else {
                return false;
            };
            let (s, e) = (s.rem_euclid(1440), e.rem_euclid(1440));
            if s <= e {
                (s..e).contains(&now)
            } else {
                now >= s || now < e
            }
        })
    }
}

/// Whether two intervals on a 24-h circle (minutes, end before start = across midnight)
/// share any minute.
fn circular_overlap((a0, a1): (i32, i32), (b0, b1): (i32, i32)) -> bool {
    let norm = |x: i32| x.rem_euclid(1440);
    let spans = |s: i32, e: i32| -> Vec<(i32, i32)> {
        let (s, e) = (norm(s), norm(e));
        if s < e {
            vec![(s, e)]
        } else {
            vec![(s, 1440), (0, e)]
        }
    };
    spans(a0, a1)
        .iter()
        .any(|&(s, e)| spans(b0, b1).iter().any(|&(t, u)| s < u && t < e))
}

/// Pairs `(i, j)`, `i < j`, of windows that overlap on some day.
pub fn overlaps(windows: &[Window], location: Option<Location>) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for j in 0..windows.len() {
        for i in 0..j {
            let (a, b) = (windows[i], windows[j]);
            let kinds = [a.start, a.end, b.start, b.end].map(TimeSpec::is_solar);
            let hit = if kinds.iter().all(|&s| !s) {
                circular_overlap(
                    (a.start.offset_min, a.end.offset_min),
                    (b.start.offset_min, b.end.offset_min),
                )
            } else if kinds.iter().all(|&s| s) {
                let Some(loc) = location else { continue };
                (0..53).any(|week| {
                    let Some(date) = NaiveDate::from_yo_opt(2026, 1 + week * 7) else {
                        return false;
                    };
                    let m = |t: TimeSpec| t.utc_minutes(loc, date);
                    match (m(a.start), m(a.end), m(b.start), m(b.end)) {
                        (Some(a0), Some(a1), Some(b0), Some(b1)) => {
                            circular_overlap((a0, a1), (b0, b1))
                        }
                        _ => false,
                    }
                })
            } else {
                false
            };
            if hit {
                found.push((i, j));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(a: &str, b: &str) -> Window {
        Window {
            start: TimeSpec::parse(a).unwrap(),
            end: TimeSpec::parse(b).unwrap(),
        }
    }

    #[test]
    fn times_parse_with_offsets() {
        assert_eq!(
            TimeSpec::parse("sunrise-30m").unwrap(),
            TimeSpec {
                anchor: Anchor::Sunrise,
                offset_min: -30
            }
        );
        assert_eq!(
            TimeSpec::parse("sunset+1h30m").unwrap(),
            TimeSpec {
                anchor: Anchor::Sunset,
                offset_min: 90
            }
        );
        assert_eq!(
            TimeSpec::parse("05:30").unwrap(),
            TimeSpec {
                anchor: Anchor::Midnight,
                offset_min: 330
            }
        );
        assert_eq!(TimeSpec::parse("05:30+15m").unwrap().offset_min, 345);
        for bad in [
            "sunrse",
            "25:00",
            "5:30",
            "sunrise+",
            "sunrise+30",
            "sunrise-13h",
            "noon",
        ] {
            assert!(TimeSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlapping_windows_are_found() {
        let berlin = Some(Location {
            latitude: 52.52,
            longitude: 13.4,
        });
        assert_eq!(
            overlaps(&[w("05:00", "09:00"), w("08:00", "10:00")], None),
            vec![(0, 1)]
        );
        assert!(overlaps(&[w("05:00", "09:00"), w("09:00", "10:00")], None).is_empty());
        // Across midnight.
        assert_eq!(
            overlaps(&[w("22:00", "02:00"), w("01:00", "03:00")], None),
            vec![(0, 1)]
        );
        // Dawn chorus and dusk do not meet; dawn and "two hours after sunrise" do.
        assert!(
            overlaps(
                &[w("sunrise-30m", "sunrise+3h"), w("sunset-1h", "sunset+1h")],
                berlin
            )
            .is_empty()
        );
        assert_eq!(
            overlaps(
                &[
                    w("sunrise-30m", "sunrise+3h"),
                    w("sunrise+2h", "sunrise+4h")
                ],
                berlin
            ),
            vec![(0, 1)]
        );
    }

    #[test]
    fn a_station_listens_only_inside_its_windows() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let berlin = Some(Location {
            latitude: 52.52,
            longitude: 13.4,
        });
        let (cest, cet) = (
            chrono::FixedOffset::east_opt(7200).unwrap(),
            chrono::FixedOffset::east_opt(3600).unwrap(),
        );
        // Dawn chorus: sunrise (02:43 UTC on 21 June) −30 min … +3 h.
        let dawn = Schedule::Windows(vec![w("sunrise-30m", "sunrise+3h")]);
        assert!(dawn.is_active(at("2026-06-21T03:00:00Z"), berlin, &cest));
        assert!(!dawn.is_active(at("2026-06-21T01:30:00Z"), berlin, &cest));
        assert!(!dawn.is_active(at("2026-06-21T12:00:00Z"), berlin, &cest));
        // In December the same window is hours later.
        assert!(dawn.is_active(at("2026-12-21T08:00:00Z"), berlin, &cet));
        assert!(!dawn.is_active(at("2026-12-21T03:00:00Z"), berlin, &cet));
        // A sun window does not depend on the zone it is looked at from.
        assert!(dawn.is_active(at("2026-06-21T03:00:00Z"), berlin, &chrono::Utc));
        // A fixed night window across midnight, local time UTC+1.
        let night = Schedule::Windows(vec![w("22:00", "02:00")]);
        assert!(night.is_active(at("2026-01-10T21:30:00Z"), None, &cet)); // 22:30 local
        assert!(night.is_active(at("2026-01-11T00:30:00Z"), None, &cet)); // 01:30 local
        assert!(!night.is_active(at("2026-01-11T01:30:00Z"), None, &cet)); // 02:30 local
        assert!(Schedule::Always.is_active(at("2026-01-11T01:30:00Z"), None, &chrono::Utc));
    }

    /// The minutes of a day, from `from` (UTC), during which `schedule` listens.
    fn listening_minutes(schedule: &Schedule, from: &str, zone: &chrono_tz::Tz) -> Vec<String> {
        let start = chrono::DateTime::parse_from_rfc3339(from).unwrap().to_utc();
        (0..1440)
            .map(|m| start + chrono::Duration::minutes(m))
            .filter(|&t| schedule.is_active(t, None, zone))
            .map(|t| t.format("%H:%M").to_string())
            .collect()
    }

    /// A clock injected minute by minute across Europe's spring change (29 March 2026,
    /// 02:00 CET → 03:00 CEST) and autumn change (25 October, 03:00 CEST → 02:00 CET): a
    /// 05:00–06:00 window stays at 05:00 local, so it moves by an hour in UTC.
    #[test]
    fn fixed_windows_keep_their_clock_times_across_daylight_saving_changes() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let morning = Schedule::Windows(vec![w("05:00", "06:00")]);
        let utc = |day: &str| listening_minutes(&morning, day, &berlin);
        let span = |m: &[String]| (m.first().cloned(), m.last().cloned(), m.len());
        let some = |a: &str, b: &str| (Some(a.to_owned()), Some(b.to_owned()), 60);
        assert_eq!(span(&utc("2026-03-28T00:00:00Z")), some("04:00", "04:59"));
        assert_eq!(span(&utc("2026-03-29T00:00:00Z")), some("03:00", "03:59"));
        assert_eq!(span(&utc("2026-10-24T00:00:00Z")), some("03:00", "03:59"));
        assert_eq!(span(&utc("2026-10-25T00:00:00Z")), some("04:00", "04:59"));
        // A night window over the spring change: 01:00–04:00 local is 2 h that night (the
        // clock skips 02:00–03:00), 3 h the night before.
        let night = Schedule::Windows(vec![w("01:00", "04:00")]);
        assert_eq!(
            listening_minutes(&night, "2026-03-27T12:00:00Z", &berlin).len(),
            180
        );
        assert_eq!(
            listening_minutes(&night, "2026-03-28T12:00:00Z", &berlin).len(),
            120
        );
    }

    #[test]
    fn sunrise_in_berlin_is_early_in_june_and_late_in_december() {
        let loc = Location {
            latitude: 52.52,
            longitude: 13.4,
        };
        let rise = TimeSpec::parse("sunrise").unwrap();
        let june = rise
            .utc_minutes(loc, NaiveDate::from_ymd_opt(2026, 6, 21).unwrap())
            .unwrap();
        let dec = rise
            .utc_minutes(loc, NaiveDate::from_ymd_opt(2026, 12, 21).unwrap())
            .unwrap();
        // 04:43 CEST = 02:43 UTC; 08:15 CET = 07:15 UTC (timeanddate.com), within 5 min.
        assert!((june - 163).abs() <= 5, "{june}");
        assert!((dec - 435).abs() <= 5, "{dec}");
    }
}
