//! Stage 6c, geofences (docs/pipeline.md#events): which polygons a vehicle is inside, and the
//! `geofence_enter` / `geofence_exit` transitions between fixes.

use geo::Point;
use serde::{Deserialize, Serialize};

use crate::network::Network;

/// A geofence crossing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crossing {
    /// Entered geofence `id`.
    Enter(String),
    /// Left geofence `id`.
    Exit(String),
}

/// The geofences a vehicle is inside, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geofences {
    inside: Vec<String>,
}

impl Geofences {
    /// Updates with a new position `at` (x = lon, y = lat); returns exits first, then entries,
    /// each in network order.
    pub fn update(&mut self, net: &Network, at: Point<f64>) -> Vec<Crossing> {
        if net.geofences().is_empty() && self.inside.is_empty() {
            return Vec::new();
        }
        let now: Vec<String> = net
            .geofences()
            .iter()
            .filter(|g| g.contains(at))
            .map(|g| g.id.clone())
            .collect();
        let mut out: Vec<Crossing> = self
            .inside
            .iter()
            .filter(|id| !now.contains(id))
            .cloned()
            .map(Crossing::Exit)
            .collect();
        out.extend(
            now.iter()
                .filter(|id| !self.inside.contains(id))
                .cloned()
                .map(Crossing::Enter),
        );
        self.inside = now;
        out
    }

    /// Ids of the geofences the vehicle is in.
    pub fn inside(&self) -> &[String] {
        &self.inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_then_exit() {
        let net = Network::from_geojson(r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"route_id":"A"},"geometry":{"type":"LineString","coordinates":[[145.0,-16.0],[145.1,-16.0]]}},
          {"type":"Feature","properties":{"geofence_id":"g"},"geometry":{"type":"Polygon","coordinates":[[[145.0,-16.01],[145.02,-16.01],[145.02,-15.99],[145.0,-15.99],[145.0,-16.01]]]}}]}"#).unwrap();
        let mut g = Geofences::default();
        assert_eq!(g.update(&net, Point::new(144.99, -16.0)), vec![]);
        assert_eq!(
            g.update(&net, Point::new(145.01, -16.0)),
            vec![Crossing::Enter("g".into())]
        );
        assert_eq!(g.update(&net, Point::new(145.015, -16.0)), vec![]);
        assert_eq!(
            g.update(&net, Point::new(145.03, -16.0)),
            vec![Crossing::Exit("g".into())]
        );
    }
}
