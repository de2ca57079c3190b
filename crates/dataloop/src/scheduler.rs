//! The scheduled trigger's due logic (issue item 5; seed ¶40, ¶48: periodic triggering),
//! sans-I/O: time is passed in, so tests drive it with `svckit::TestClock` and never sleep.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use cron::Schedule;

use crate::error::{Error, Result};

/// Decides when the scheduled trigger is due.
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedule: Schedule,
    next_due: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// A scheduler for `expression` (cron with seconds, UTC) whose first run is the first due
    /// time after `now`.
    ///
    /// # Errors
    /// [`Error::Cron`] when the expression does not parse.
    pub fn new(expression: &str, now: SystemTime) -> Result<Self> {
        let schedule = Schedule::from_str(expression).map_err(|e| Error::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        let now: DateTime<Utc> = now.into();
        let next_due = schedule.after(&now).next();
        Ok(Self { schedule, next_due })
    }

    /// The next due time, `None` when the schedule has no future run.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.next_due.map(SystemTime::from)
    }

    /// How long to wait from `now` until the next due time (zero when overdue; one hour when
    /// nothing is scheduled, to re-check).
    pub fn wait(&self, now: SystemTime) -> Duration {
        self.next_due().map_or(Duration::from_secs(3600), |due| {
            due.duration_since(now).unwrap_or(Duration::ZERO)
        })
    }

    /// Returns the due time when a run is due at `now` and advances to the next due time after
    /// `now`. Runs missed while the process was busy or down are coalesced into this one.
    pub fn poll(&mut self, now: SystemTime) -> Option<SystemTime> {
        let due = self.next_due?;
        let now_utc: DateTime<Utc> = now.into();
        if now_utc < due {
            return None;
        }
        self.next_due = self.schedule.after(&now_utc).next();
        Some(due.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svckit::{Clock, TestClock};

    fn at(text: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
            .into()
    }

    #[test]
    fn daily_schedule_fires_once_per_day_with_virtual_time() {
        let clock = TestClock::starting_at(at("2026-01-01T01:59:00Z"));
        let mut s = Scheduler::new("0 0 2 * * *", clock.wall()).unwrap();
        assert_eq!(s.next_due(), Some(at("2026-01-01T02:00:00Z")));
        assert_eq!(s.wait(clock.wall()), Duration::from_secs(60));
        assert_eq!(s.poll(clock.wall()), None);
        clock.tick(Duration::from_secs(59));
        assert_eq!(s.poll(clock.wall()), None, "one second early");
        clock.tick(Duration::from_secs(1));
        assert_eq!(s.poll(clock.wall()), Some(at("2026-01-01T02:00:00Z")));
        assert_eq!(s.poll(clock.wall()), None, "fires once");
        assert_eq!(s.next_due(), Some(at("2026-01-02T02:00:00Z")));
        // Down for three days: one coalesced run, then back on the daily rhythm.
        clock.tick(Duration::from_secs(3 * 86_400 + 10));
        assert_eq!(s.poll(clock.wall()), Some(at("2026-01-02T02:00:00Z")));
        assert_eq!(s.poll(clock.wall()), None);
        assert_eq!(s.next_due(), Some(at("2026-01-05T02:00:00Z")));
    }

    #[test]
    fn table_of_expressions() {
        // (expression, start, expected first due)
        let cases = [
            (
                "*/5 * * * * *",
                "2026-03-01T10:00:03Z",
                "2026-03-01T10:00:05Z",
            ),
            (
                "0 30 * * * *",
                "2026-03-01T10:31:00Z",
                "2026-03-01T11:30:00Z",
            ),
            (
                "0 0 0 * * Mon",
                "2026-03-01T10:00:00Z",
                "2026-03-02T00:00:00Z",
            ),
        ];
        for (expr, start, due) in cases {
            let s = Scheduler::new(expr, at(start)).unwrap();
            assert_eq!(s.next_due(), Some(at(due)), "{expr}");
        }
        assert!(matches!(
            Scheduler::new("not cron", at("2026-01-01T00:00:00Z")),
            Err(Error::Cron { .. })
        ));
    }
}
