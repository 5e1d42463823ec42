//! What the server's log leaves out whatever `HOLDFAST_LOG` asks for.

use std::fmt::Debug;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Drops the database driver's log lines of statements that carry the embedded store's key:
/// every new connection to an encrypted store runs `PRAGMA key = "x'…'"` first, and
/// `HOLDFAST_LOG=sqlx=debug` (statement logging, for diagnosing slow reads) would otherwise
/// write the key in the clear. Other statements are logged as asked.
pub struct NoStoreKey;

impl<S: Subscriber> Layer<S> for NoStoreKey {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if !event.metadata().target().starts_with("sqlx") {
            return true;
        }
        let mut seen = CarriesKey(false);
        event.record(&mut seen);
        !seen.0
    }
}

/// Whether a field of an event holds a statement that sets a key.
struct CarriesKey(bool);

fn sets_key(text: &str) -> bool {
    text.to_ascii_lowercase().contains("pragma key")
}

impl Visit for CarriesKey {
    fn record_str(&mut self, _: &Field, value: &str) {
        self.0 |= sets_key(value);
    }

    fn record_debug(&mut self, _: &Field, value: &dyn Debug) {
        self.0 |= sets_key(&format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects the log's text.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn statements_that_set_the_key_are_not_logged() {
        let written = Written::default();
        let out = written.clone();
        let log = tracing_subscriber::registry().with(NoStoreKey).with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || out.clone())
                .with_ansi(false),
        );
        tracing::subscriber::with_default(log, || {
            let statement = "PRAGMA key = \"x'00112233'\"; PRAGMA cipher_page_size = 16384;";
            tracing::debug!(target: "sqlx::query", summary = "PRAGMA key = …", statement, "");
            tracing::debug!(target: "sqlx::query", summary = %"pragma KEY = 'x'", "");
            tracing::debug!(target: "sqlx::query", statement = "SELECT 1 FROM rows", "");
            tracing::info!(target: "holdfast", "the pragma key setting is documented");
        });
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("00112233") && !text.to_lowercase().contains("pragma key ="),
            "{text}"
        );
        assert!(text.contains("SELECT 1 FROM rows"), "{text}");
        assert!(
            text.contains("the pragma key setting is documented"),
            "{text}"
        );
    }
}
