//! Service days (GTFS `calendar.txt` and `calendar_dates.txt`) and the clock arithmetic of a
//! service day in the agency's time zone.
//!
//! GTFS times are seconds after "noon minus 12 h" of the service date in the agency's time zone
//! (midnight except on the days a DST change happens), and may exceed 24 h for trips running
//! past midnight; [`day_start_ms`] gives that instant.
//!
//! # References
//! GTFS Schedule reference, `stop_times.txt` (`arrival_time`) and "Service day".

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// One service's weekly pattern.
#[derive(Debug, Clone, Copy)]
struct Weekly {
    /// Bit `n` set: runs on the weekday `n` days after Monday.
    days: u8,
    start: Date,
    end: Date,
}

/// Which services run on which dates.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    ids: Vec<String>,
    index: HashMap<String, u32>,
    weekly: Vec<Option<Weekly>>,
    /// `calendar_dates.txt` exception type 1.
    added: HashSet<(u32, Date)>,
    /// `calendar_dates.txt` exception type 2.
    removed: HashSet<(u32, Date)>,
}

impl Calendar {
    /// The services of a parsed feed.
    pub(crate) fn from_gtfs(gtfs: &gtfs_structures::Gtfs) -> Calendar {
        let mut cal = Calendar::default();
        let mut ids: Vec<&String> = gtfs
            .calendar
            .keys()
            .chain(gtfs.calendar_dates.keys())
            .collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let s = cal.intern(id);
            if let Some(c) = gtfs.calendar.get(id) {
                let flags = [
                    c.monday,
                    c.tuesday,
                    c.wednesday,
                    c.thursday,
                    c.friday,
                    c.saturday,
                    c.sunday,
                ];
                let days = flags
                    .iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, &on)| acc | (u8::from(on) << i));
                cal.weekly[s as usize] = Some(Weekly {
                    days,
                    start: c.start_date,
                    end: c.end_date,
                });
            }
            for d in gtfs.calendar_dates.get(id).into_iter().flatten() {
                match d.exception_type {
                    gtfs_structures::Exception::Added => cal.added.insert((s, d.date)),
                    gtfs_structures::Exception::Deleted => cal.removed.insert((s, d.date)),
                };
            }
        }
        cal
    }

    /// One service per date, named `YYYYMMDD`, running on that date only (a timetable made
    /// without a feed, [`super::Schedule::from_trips`]).
    pub(crate) fn for_dates(dates: &[Date]) -> Calendar {
        let mut cal = Calendar::default();
        for &d in dates {
            let s = cal.intern(&yyyymmdd(d).to_string());
            cal.added.insert((s, d));
        }
        cal
    }

    fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), i);
        self.weekly.push(None);
        i
    }

    /// Index of `service_id`.
    pub fn service(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// Whether service `s` runs on `date`.
    pub fn runs(&self, s: u32, date: Date) -> bool {
        if self.removed.contains(&(s, date)) {
            return false;
        }
        if self.added.contains(&(s, date)) {
            return true;
        }
        let Some(Some(w)) = self.weekly.get(s as usize) else {
            return false;
        };
        let bit = date.weekday().to_monday_zero_offset() as u8;
        w.start <= date && date <= w.end && w.days & (1 << bit) != 0
    }
}

/// The instant GTFS times of service date `date` count from ("noon minus 12 h"), Unix ms.
pub fn day_start_ms(tz: &TimeZone, date: Date) -> Option<i64> {
    let noon = date.at(12, 0, 0, 0).to_zoned(tz.clone()).ok()?;
    Some(noon.timestamp().as_millisecond() - 12 * 3600 * 1000)
}

/// The local calendar date at Unix ms `ts` in `tz`.
pub fn local_date(tz: &TimeZone, ts: i64) -> Option<Date> {
    let t = Timestamp::from_millisecond(ts).ok()?;
    Some(tz.to_datetime(t).date())
}

/// `date` as the GTFS-Realtime `start_date` number, `YYYYMMDD`.
pub fn yyyymmdd(date: Date) -> u32 {
    date.year() as u32 * 10_000 + date.month() as u32 * 100 + date.day() as u32
}

/// A `YYYYMMDD` number back as a date.
pub fn from_yyyymmdd(n: u32) -> Option<Date> {
    Date::new(
        (n / 10_000) as i16,
        ((n / 100) % 100) as i8,
        (n % 100) as i8,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brisbane_day_starts_at_local_midnight() {
        let tz = jiff::tz::TimeZoneDatabase::bundled()
            .get("Australia/Brisbane")
            .unwrap();
        let d = Date::new(2014, 6, 2).unwrap();
        // 2014-06-02T00:00+10:00 = 2014-06-01T14:00Z.
        assert_eq!(day_start_ms(&tz, d), Some(1_401_631_200_000));
        assert_eq!(local_date(&tz, 1_401_631_200_000), Some(d));
        assert_eq!(yyyymmdd(d), 20140602);
        assert_eq!(from_yyyymmdd(20140602), Some(d));
    }
}
