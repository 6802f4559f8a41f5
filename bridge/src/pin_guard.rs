//! Wrong tablet passwords, counted per user: after [`MAX_FAILURES`] within [`WINDOW`] the user's tablet
//! logins are refused until the oldest of them is out of the window. Tablets have no other identity than a
//! UUID and user ids are small numbers, so without this a short PIN could be guessed by trying them all.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed per user within [`WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
/// How long a wrong password counts.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(crate) struct PinGuard {
    failures: Mutex<HashMap<i32, VecDeque<Instant>>>,
}

impl PinGuard {
    /// How long the user must wait before trying again, if they must.
    pub(crate) fn wait(&self, user: i32, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = map.get_mut(&user)?;
        while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            times.pop_front();
        }
        if times.is_empty() {
            map.remove(&user);
            return None;
        }
        (times.len() >= MAX_FAILURES).then(|| WINDOW - now.duration_since(times[0]))
    }

    /// Counts a wrong password.
    pub(crate) fn failed(&self, user: i32, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = map.entry(user).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
        // Forget users whose failures are all old, so the map stays small.
        if map.len() > 10_000 {
            map.retain(|_, t| t.back().is_some_and(|last| now.duration_since(*last) < WINDOW));
        }
    }

    /// Forgets the user's wrong passwords (after a right one).
    pub(crate) fn succeeded(&self, user: i32) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_wrong_passwords_lock_the_user_until_the_first_is_five_minutes_old() {
        let g = PinGuard::default();
        let t0 = Instant::now();
        for i in 0..4 {
            g.failed(7, t0 + Duration::from_secs(i));
            assert_eq!(g.wait(7, t0 + Duration::from_secs(i)), None);
        }
        g.failed(7, t0 + Duration::from_secs(10));
        assert_eq!(g.wait(7, t0 + Duration::from_secs(10)), Some(WINDOW - Duration::from_secs(10)));
        assert_eq!(g.wait(8, t0 + Duration::from_secs(10)), None, "other users are not affected");
        // once the first failure is out of the window, one more try is allowed
        assert_eq!(g.wait(7, t0 + WINDOW), None);
        g.failed(7, t0 + WINDOW);
        assert!(g.wait(7, t0 + WINDOW).is_some());
        g.succeeded(7);
        assert_eq!(g.wait(7, t0 + WINDOW), None);
    }
}
