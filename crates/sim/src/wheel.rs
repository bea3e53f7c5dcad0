//! A hashed timer wheel of cluster ordinals: O(1) to schedule, one slot drained per tick. A
//! million clusters cost four bytes each here, and no task or timer per cluster.

use std::time::Duration;

pub struct TimerWheel {
    slots: Vec<Vec<u32>>,
    tick: Duration,
    /// The slot the next `advance` drains.
    cursor: usize,
}

impl TimerWheel {
    /// A wheel that can schedule up to `horizon` ahead in steps of `tick`.
    pub fn new(tick: Duration, horizon: Duration) -> TimerWheel {
        let slots = (horizon.as_millis() / tick.as_millis().max(1)) as usize + 2;
        TimerWheel {
            slots: vec![Vec::new(); slots],
            tick,
            cursor: 0,
        }
    }

    /// Schedules `ordinal` to come due after `delay` (clamped to the horizon; at least one tick,
    /// so work scheduled while draining never lands in the slot being drained).
    pub fn schedule(&mut self, ordinal: u32, delay: Duration) {
        let ticks = (delay.as_millis() / self.tick.as_millis().max(1)) as usize;
        let ticks = ticks.clamp(1, self.slots.len() - 1);
        let slot = (self.cursor + ticks) % self.slots.len();
        self.slots[slot].push(ordinal);
    }

    /// Drains the current slot and moves on by one tick.
    pub fn advance(&mut self) -> Vec<u32> {
        let due = std::mem::take(&mut self.slots[self.cursor]);
        self.cursor = (self.cursor + 1) % self.slots.len();
        due
    }

    pub fn tick(&self) -> Duration {
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_due_after_their_delay_and_not_before() {
        let mut wheel = TimerWheel::new(Duration::from_millis(100), Duration::from_secs(2));
        wheel.schedule(1, Duration::from_millis(300));
        wheel.schedule(2, Duration::ZERO);
        let drained: Vec<Vec<u32>> = (0..5).map(|_| wheel.advance()).collect();
        assert_eq!(drained[0], Vec::<u32>::new());
        assert_eq!(drained[1], vec![2], "zero delay waits one tick");
        assert_eq!(drained[3], vec![1]);
        assert!(drained[2].is_empty() && drained[4].is_empty());
    }

    #[test]
    fn delays_beyond_the_horizon_are_clamped_not_lost() {
        let mut wheel = TimerWheel::new(Duration::from_millis(100), Duration::from_millis(500));
        wheel.schedule(9, Duration::from_secs(60));
        let found = (0..20).any(|_| wheel.advance().contains(&9));
        assert!(found);
    }
}
