//! Stage 6a, deviation with hysteresis (docs/pipeline.md#events): `off_route_fixes` consecutive
//! fixes farther than the corridor width raise `deviation`; as many consecutive fixes at least
//! `corridor_hysteresis_m` inside the edge raise `back_on_route`. The band between the two
//! thresholds belongs to neither side and breaks a streak, so a vehicle driving along the corridor
//! edge with GPS noise changes state at most once.

use serde::{Deserialize, Serialize};

/// A change of on-route state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The vehicle left its corridor.
    Deviated,
    /// The vehicle came back into it.
    BackOnRoute,
}

/// Per-vehicle deviation state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deviation {
    /// Whether a deviation is in progress.
    deviated: bool,
    /// Consecutive fixes on the other side of the current state.
    streak: u32,
}

impl Deviation {
    /// Whether a deviation is in progress.
    pub fn is_deviated(&self) -> bool {
        self.deviated
    }

    /// Feeds one fix's cross-track distance `off_m` for a corridor of half-width `corridor_m`.
    pub fn update(
        &mut self,
        off_m: f64,
        corridor_m: f64,
        hysteresis_m: f64,
        fixes: u32,
    ) -> Option<Transition> {
        let crossing = if self.deviated {
            off_m <= corridor_m - hysteresis_m
        } else {
            off_m > corridor_m
        };
        if !crossing {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < fixes.max(1) {
            return None;
        }
        self.streak = 0;
        self.deviated = !self.deviated;
        Some(if self.deviated {
            Transition::Deviated
        } else {
            Transition::BackOnRoute
        })
    }

    /// Forgets the state (the vehicle changed route).
    pub fn reset(&mut self) {
        *self = Deviation::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn needs_consecutive_fixes_each_way() {
        let mut d = Deviation::default();
        let feed = |d: &mut Deviation, xs: &[f64]| {
            xs.iter()
                .filter_map(|&x| d.update(x, 50.0, 10.0, 3))
                .collect::<Vec<_>>()
        };
        assert!(
            feed(&mut d, &[60.0, 60.0, 10.0, 60.0, 60.0, 10.0]).is_empty(),
            "interrupted streaks"
        );
        assert_eq!(
            feed(&mut d, &[60.0, 70.0, 80.0]),
            vec![Transition::Deviated]
        );
        assert!(
            feed(&mut d, &[300.0, 10.0, 10.0, 45.0, 10.0, 10.0]).is_empty(),
            "45 m is in the band"
        );
        assert_eq!(feed(&mut d, &[10.0]), vec![Transition::BackOnRoute]);
    }

    proptest! {
        /// A vehicle running along the edge (true offset within ±band/2 of the corridor
        /// width) with noise of at most ±band/2 changes state at most once.
        #[test]
        fn never_flaps_along_the_edge(
            offset in -5.0f64..5.0,
            noise in prop::collection::vec(-5.0f64..5.0, 1..400),
        ) {
            let mut d = Deviation::default();
            let changes = noise.iter().filter_map(|n| d.update(50.0 + offset + n, 50.0, 10.0, 3)).count();
            prop_assert!(changes <= 1, "{changes} changes");
        }

        /// Any trace: a deviation is raised only after 3 consecutive fixes outside.
        #[test]
        fn deviation_needs_consecutive_outside(offs in prop::collection::vec(0.0f64..100.0, 1..200)) {
            let mut d = Deviation::default();
            for (i, &x) in offs.iter().enumerate() {
                if d.update(x, 50.0, 10.0, 3) == Some(Transition::Deviated) {
                    prop_assert!(i >= 2 && offs[i - 2..=i].iter().all(|&o| o > 50.0));
                }
            }
        }
    }
}
