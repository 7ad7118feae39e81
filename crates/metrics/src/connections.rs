//! The client connections a worker has accepted and has open: the one instrument both servers
//! keep alike.

use std::sync::Arc;

use crate::{Counter, Gauge, Text};

/// Connections accepted and open, written by one worker thread.
#[derive(Debug, Default)]
pub struct Connections {
    accepted: Counter,
    open: Gauge,
}

impl Connections {
    /// Writes the families `<prefix>_connections_accepted_total` and `<prefix>_connections_open`,
    /// summed over `sets`.
    pub fn render<'a>(text: &mut Text, prefix: &str, sets: impl Iterator<Item = &'a Connections>) {
        let (accepted, open) = sets.fold((0u64, 0i64), |(accepted, open), set| {
            (accepted + set.accepted.get(), open + set.open.get())
        });
        let name = format!("{prefix}_connections_accepted_total");
        text.family(&name, "counter", "Client connections accepted.");
        text.sample(&name, &[], accepted);
        let name = format!("{prefix}_connections_open");
        text.family(&name, "gauge", "Client connections open now.");
        text.sample(&name, &[], open);
    }
}

/// A connection counted as accepted, and as open while this lives, in the [`Connections`] of a
/// worker's set `T` (held by `Arc`, so the guard can move into the connection's task).
pub struct OpenConnection<T: AsRef<Connections>>(Arc<T>);

impl<T: AsRef<Connections>> OpenConnection<T> {
    pub fn new(set: &Arc<T>) -> OpenConnection<T> {
        let connections = (**set).as_ref();
        connections.accepted.inc();
        connections.open.add(1);
        OpenConnection(Arc::clone(set))
    }
}

impl<T: AsRef<Connections>> Drop for OpenConnection<T> {
    fn drop(&mut self) {
        (*self.0).as_ref().open.add(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Set(Connections);

    impl AsRef<Connections> for Set {
        fn as_ref(&self) -> &Connections {
            &self.0
        }
    }

    #[test]
    fn a_guard_counts_one_accepted_and_open_until_it_drops() {
        let sets = [
            Arc::new(Set(Connections::default())),
            Arc::new(Set(Connections::default())),
        ];
        let first = OpenConnection::new(&sets[0]);
        let second = OpenConnection::new(&sets[1]);
        drop(OpenConnection::new(&sets[1]));
        drop(first);
        let mut text = Text::default();
        Connections::render(&mut text, "x", sets.iter().map(|set| &set.0));
        let text = text.into_string();
        assert!(
            text.contains("\nx_connections_accepted_total 3\n"),
            "{text}"
        );
        assert!(text.contains("\nx_connections_open 1\n"), "{text}");
        drop(second);
    }
}
