//! Open-model arrivals: when each virtual user of a load scenario starts.
//!
//! The reference injects users at a rate that ramps linearly from `start_per_s` to `peak_per_s`
//! over the ramp, then holds the peak. Users arrive on that schedule whatever the server does
//! (an open model: a slow answer does not delay the next arrival). With `N(t)` the number of users
//! due by time `t` (the integral of the rate), user `i` (from 0) arrives when `N(t) = i + 1`, so
//! arrivals are evenly spread at the current rate and a compressed run keeps the peak rates.

use std::time::Duration;

/// One scenario's injection profile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Injection {
    /// Users per second at the start of the ramp (the reference uses 1).
    pub start_per_s: f64,
    /// Users per second at the end of the ramp and during the hold.
    pub peak_per_s: f64,
    /// How long the rate ramps.
    pub ramp: Duration,
    /// How long the peak rate holds after the ramp.
    pub hold: Duration,
}

impl Injection {
    /// Users due by `t` seconds after the start (the integral of the rate).
    pub fn users_by(&self, t: f64) -> f64 {
        let ramp = self.ramp.as_secs_f64();
        let ramped = t.min(ramp);
        let mut users = self.start_per_s * ramped;
        if ramp > 0.0 {
            users += (self.peak_per_s - self.start_per_s) * ramped * ramped / (2.0 * ramp);
        }
        let held = (t - ramp).clamp(0.0, self.hold.as_secs_f64());
        users + self.peak_per_s * held
    }

    /// How many users the whole profile starts.
    pub fn users_total(&self) -> u64 {
        let end = (self.ramp + self.hold).as_secs_f64();
        // A tiny tolerance keeps 110.5 * 2 from becoming 220.999...
        (self.users_by(end) + 1e-9).floor() as u64
    }

    /// The start time of every user, in order.
    pub fn arrivals(&self) -> Vec<Duration> {
        (0..self.users_total())
            .map(|index| Duration::from_secs_f64(self.time_of(index as f64 + 1.0)))
            .collect()
    }

    /// The time at which `users` users are due: the inverse of `users_by`.
    fn time_of(&self, users: f64) -> f64 {
        let ramp = self.ramp.as_secs_f64();
        let ramp_users = self.users_by(ramp);
        if users > ramp_users {
            return ramp + (users - ramp_users) / self.peak_per_s;
        }
        // Solve a*t^2 + start*t - users = 0 on the ramp.
        let a = (self.peak_per_s - self.start_per_s) / (2.0 * ramp);
        if a.abs() < 1e-12 {
            return users / self.start_per_s;
        }
        let start = self.start_per_s;
        (-start + (start * start + 4.0 * a * users).sqrt()) / (2.0 * a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(peak: f64, ramp_s: u64, hold_s: u64) -> Injection {
        Injection {
            start_per_s: 1.0,
            peak_per_s: peak,
            ramp: Duration::from_secs(ramp_s),
            hold: Duration::from_secs(hold_s),
        }
    }

    /// Checks the user count, the first and last arrival (seconds, to 1 ms) of a profile.
    #[track_caller]
    fn check(injection: Injection, users: u64, first_s: f64, last_s: f64) {
        let arrivals = injection.arrivals();
        assert_eq!(arrivals.len() as u64, users, "{injection:?}");
        assert_eq!(injection.users_total(), users);
        let close = |got: Duration, want: f64| (got.as_secs_f64() - want).abs() < 1e-3;
        assert!(
            close(arrivals[0], first_s),
            "{injection:?} first {:?}",
            arrivals[0]
        );
        let last = *arrivals.last().unwrap();
        assert!(close(last, last_s), "{injection:?} last {last:?}");
        assert!(
            arrivals.windows(2).all(|pair| pair[0] < pair[1]),
            "{injection:?}: arrivals out of order"
        );
    }

    #[test]
    fn reference_profiles_and_compressed_ones() {
        // The reference: 2 minutes of ramp, 2 minutes of hold.
        check(profile(220.0, 120, 120), 13_260 + 26_400, 0.63364, 240.0);
        check(profile(110.0, 120, 120), 6_660 + 13_200, 0.74674, 240.0);
        check(profile(10.0, 120, 120), 660 + 1_200, 0.96507, 240.0);
        // Compressed: 20 s + 20 s keeps the peak rates.
        check(profile(220.0, 20, 20), 2_210 + 4_400, 0.34570, 40.0);
        // No ramp: the peak from the start.
        check(profile(10.0, 0, 2), 20, 0.1, 2.0);
        // A flat "ramp" at the start rate.
        check(profile(1.0, 3, 0), 3, 1.0, 3.0);
    }

    #[test]
    fn rate_at_the_end_of_the_ramp_is_the_peak() {
        let injection = profile(220.0, 20, 20);
        let arrivals = injection.arrivals();
        // Around the end of the ramp the spacing is 1/220 s, and early on about 1 s.
        let ramp_end = arrivals
            .iter()
            .position(|t| t.as_secs_f64() >= 20.0)
            .unwrap();
        let gap = arrivals[ramp_end + 1] - arrivals[ramp_end];
        assert!((gap.as_secs_f64() - 1.0 / 220.0).abs() < 1e-6, "{gap:?}");
        // Early on the rate is still low (about 5/s after the first user of a 20 s ramp to 220),
        // and the spacing shrinks along the ramp.
        let early_gap = arrivals[1] - arrivals[0];
        assert!(early_gap.as_secs_f64() > 0.15, "{early_gap:?}");
        let gaps: Vec<Duration> = arrivals[..=ramp_end]
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect();
        assert!(gaps
            .windows(2)
            .all(|pair| pair[1] <= pair[0] + Duration::from_nanos(2)));
    }
}
