//! Which OsmAnd devices may report (docs/ingest-http.md): the OsmAnd protocol carries no
//! credentials, only a device id, so with authentication configured the id itself is checked
//! against a list — the `--devices` file (one id a line; blank lines and `#` comments ignored) and
//! the users file's driver vehicles. Without authentication and without `--devices`, every device
//! is let in.

use std::collections::HashSet;
use std::path::Path;

use crate::auth::Authenticator;

/// Longest `--devices` file read; a list of ids is far smaller.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The devices let in.
#[derive(Debug, Clone)]
pub enum Devices {
    /// No authentication and no list: every device.
    Any,
    /// Only these ids; any other gets 404.
    Only(HashSet<String>),
}

impl Devices {
    /// The list for this configuration. `secured` says whether any authentication is configured
    /// (users file, JWT, client CA).
    ///
    /// # Errors
    /// An unreadable or oversized `--devices` file, naming it.
    pub fn load(
        file: Option<&Path>,
        auth: &Authenticator,
        secured: bool,
    ) -> Result<Devices, String> {
        let mut ids: HashSet<String> = match file {
            Some(path) => read(path)?,
            None if !secured => return Ok(Devices::Any),
            None => HashSet::new(),
        };
        if secured {
            ids.extend(auth.driver_vehicles().map(str::to_owned));
        }
        if ids.is_empty() {
            tracing::warn!(
                "the OsmAnd listener lets no device in: list device ids with --devices FILE or give drivers a vehicle in the users file"
            );
        }
        Ok(Devices::Only(ids))
    }

    /// Whether `id` may report.
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Devices::Any => true,
            Devices::Only(ids) => ids.contains(id),
        }
    }
}

fn read(path: &Path) -> Result<HashSet<String>, String> {
    let name = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{name}: cannot read the --devices file ({e})"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{name}: the --devices file is over {MAX_FILE_BYTES} bytes: list one device id a line"
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{name}: cannot read the --devices file ({e})"))?;
    Ok(parse(&text))
}

/// One id a line; blank lines and lines starting with `#` are skipped.
fn parse(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_a_line_without_comments() {
        let ids = parse("# phones\nbus-1\n\n  bus-2  \n#bus-3\n");
        assert_eq!(ids.len(), 2);
        let d = Devices::Only(ids);
        assert!(d.allows("bus-1") && d.allows("bus-2"));
        assert!(!d.allows("bus-3") && !d.allows("#bus-3"));
        assert!(Devices::Any.allows("whatever"));
    }
}
