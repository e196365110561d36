//! Where a location update came in: the `source` label of the ingest metrics
//! (`fleetmq_updates_*_total{source="mqtt"|"http"|"osmand"}`).

/// The ingest path of a location update. Every path feeds the same pipeline; only the
/// metrics tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A PUBLISH to `fleet/{id}/location` (TCP, TLS or WebSocket).
    Mqtt,
    /// `POST /api/v1/vehicles/{id}/location` on `--http`/`--https`.
    Http,
    /// The OsmAnd / Traccar Client protocol on `--osmand`/`--osmands`.
    Osmand,
}

impl Source {
    /// Every source, in the order of [`Source::index`].
    pub const ALL: [Source; 3] = [Source::Mqtt, Source::Http, Source::Osmand];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mqtt => "mqtt",
            Source::Http => "http",
            Source::Osmand => "osmand",
        }
    }

    /// Position in per-source counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
