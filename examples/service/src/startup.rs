//! Start-up and shutdown: settings checked (every problem at once), the
//! first connections opened before listening, and a shutdown on SIGTERM or
//! Ctrl-C that stops accepting, lets in-flight requests finish (bounded),
//! then closes the connections.
//!
//! Exit status: 0 after a clean shutdown; 2 on a configuration problem; 1 on
//! anything else (credentials, authentication, network, the listener).

use std::process::ExitCode;
use std::sync::Arc;

use elasticache_iam::{ConnectionConfig, Error, ErrorKind, SharedConnection, display_chain};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::routes::{AppState, router};
use crate::settings::Settings;
use crate::store::Store;
use crate::telemetry::{init_logging, install_metrics};

/// The whole service: what `main` runs.
pub async fn run() -> ExitCode {
    init_logging();
    // Listening for SIGTERM from the start: one that comes while connecting
    // ends the process cleanly too.
    let mut shutdown = Box::pin(shutdown_signal());
    let (settings, config) = match settings() {
        Ok(both) => both,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    let metrics = match install_metrics() {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let mut builder = SharedConnection::builder(config);
    if let Some(cluster) = settings.cluster {
        builder = builder.cluster_mode(cluster);
    }
    // Listens only once the first connections are open and authenticated.
    let built = tokio::select! {
        built = builder.build() => built,
        () = &mut shutdown => {
            eprintln!("shutting down before listening: nothing to drain");
            return ExitCode::SUCCESS;
        }
    };
    let redis = match built {
        Ok(redis) => redis,
        Err(err) => {
            eprintln!("error: {}", diagnose(&err));
            return ExitCode::from(if err.kind() == ErrorKind::Configuration {
                2
            } else {
                1
            });
        }
    };
    let listener = match TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "error: cannot listen on {} (LISTEN_ADDR): {err}",
                settings.listen
            );
            return ExitCode::from(1);
        }
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| settings.listen.to_string(), |a| a.to_string());
    let store = Store::new(redis, settings.session_ttl, settings.code_ttl);
    let app = router(AppState {
        store: store.clone(),
        metrics,
    });
    // The line scripts and tests wait for.
    println!("listening on {address}");

    let (stopping, stopped) = watch::channel(false);
    let stopping = Arc::new(stopping);
    let signal = {
        let stopping = Arc::clone(&stopping);
        async move {
            shutdown.await;
            tracing::warn!(
                grace_s = settings.shutdown_grace.as_secs(),
                "shutting down: no new connections; in-flight requests finish"
            );
            let _ = stopping.send(true);
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let grace_over = async {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
        tokio::time::sleep(settings.shutdown_grace).await;
    };
    let served = tokio::select! {
        served = server => served,
        () = grace_over => {
            tracing::warn!("requests still running after the shutdown grace period were abandoned");
            Ok(())
        }
    };
    // The last handle: its connections close.
    drop(store);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: the HTTP server failed: {err}");
            ExitCode::from(1)
        }
    }
}

/// The service's and the connection's settings, or every problem with them.
fn settings() -> Result<(Settings, ConnectionConfig), Vec<String>> {
    let settings = Settings::from_env();
    let config = ConnectionConfig::builder().from_env().build();
    let mut problems = settings.as_ref().err().cloned().unwrap_or_default();
    if let Err(err) = &config {
        let each = match err.problems() {
            [] => std::slice::from_ref(err),
            each => each,
        };
        problems.extend(each.iter().map(diagnose));
    }
    match (settings, config) {
        (Ok(settings), Ok(config)) => Ok((settings, config)),
        _ => Err(problems),
    }
}

/// A start-up failure, with what to check.
pub fn diagnose(err: &Error) -> String {
    let text = display_chain(err);
    match err.kind() {
        ErrorKind::Credentials => format!(
            "no AWS credentials: {text}. Give the task or pod a role (ECS task role, EKS Pod \
             Identity or IRSA), or set AWS_PROFILE / AWS_ACCESS_KEY_ID"
        ),
        ErrorKind::Io => format!(
            "{text}. Is the endpoint right (REDIS_URL / REDIS_HOST), and can this network reach \
             it? With mutual TLS, are REDIS_SSL_CERTFILE and REDIS_SSL_KEYFILE the certificate \
             the server trusts?"
        ),
        // IAM refusals carry their own checklist; a password's needs one.
        ErrorKind::AuthenticationRefused if !text.contains("elasticache:Connect") => format!(
            "{text}. Check REDIS_USERNAME and REDIS_PASSWORD (or the user and password in \
             REDIS_URL)"
        ),
        // Name the variable (or setting) at fault, unless the message does.
        ErrorKind::Configuration => match err.parameter() {
            Some(parameter) if !text.contains(parameter) => format!("{parameter}: {text}"),
            _ => text,
        },
        _ => text,
    }
}

/// SIGTERM (what ECS and Kubernetes send) or Ctrl-C. The handlers are
/// registered when this is called, not when it is first polled.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
