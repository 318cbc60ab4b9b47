//! No token, secret access key or session token in tracing output at TRACE
//! level, from this crate or the SigV4 crate, proven with marker secrets.
//!
//! This binary holds a single test on purpose: tracing caches each call site's
//! interest process-wide, and a test signing concurrently without a subscriber
//! can make a scoped subscriber miss events.

mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::markers::{assert_clean, at, forbidden, marker_credentials, signer};
use tracing_subscriber::fmt::MakeWriter;

/// Collects everything written by a tracing subscriber.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn tracing_output_at_trace_level_holds_no_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let token = tracing::subscriber::with_default(subscriber, || {
        signer()
            .sign(
                &marker_credentials(Some(at() + Duration::from_secs(3600))),
                at(),
            )
            .unwrap()
    });
    let logs = capture.text();
    // The capture works at this level: our own event is there.
    assert!(logs.contains("signed IAM auth token"), "{logs}");
    // aws-sigv4 logs the canonical request, session token included, at TRACE
    // level when presigning; the signer keeps those events out.
    assert!(!logs.contains("aws_sigv4"), "{logs}");
    // The session token is really in the token: the check below is not vacuous.
    assert!(token.expose_secret().contains("SESSIONxMARKER"));
    assert_clean("tracing output", &logs, &forbidden(token.expose_secret()));
}
