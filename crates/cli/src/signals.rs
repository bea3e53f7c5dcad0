//! Stop signals: SIGTERM (Kubernetes, systemd, `docker stop`) and SIGINT (Ctrl-C) alike start a
//! graceful stop; a second one ends the process at once.

use std::future::Future;

/// Installs the handlers now and returns a future that resolves at the first SIGTERM or SIGINT.
///
/// Installing before the server or agent starts matters twice: a signal that arrives while it
/// is still loading is remembered (and acted on as soon as it runs) instead of killing it
/// half-started, and as PID 1 in a container, where the kernel drops signals that have no
/// handler, SIGTERM is handled at all.
pub fn stop_requested() -> impl Future<Output = ()> {
    let installed = Installed::install();
    async move {
        match installed {
            Ok(installed) => installed.first().await,
            Err(error) => {
                tracing::warn!(%error, "could not install the SIGTERM handler; only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(unix)]
struct Installed {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Installed {
    fn install() -> std::io::Result<Installed> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Installed {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first signal, then leaves a watcher that exits at the second.
    async fn first(mut self) {
        let name = self.next().await;
        tracing::info!(
            signal = name,
            "stopping gracefully (send another signal to stop at once)"
        );
        tokio::spawn(async move {
            let name = self.next().await;
            // 128 + the signal number, as a shell reports a process the signal killed.
            let code = if name == "SIGTERM" { 143 } else { 130 };
            eprintln!("{name} again: stopping at once");
            std::process::exit(code);
        });
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Installed;

#[cfg(not(unix))]
impl Installed {
    fn install() -> std::io::Result<Installed> {
        Ok(Installed)
    }

    async fn first(self) {
        let _ = tokio::signal::ctrl_c().await;
        tokio::spawn(async {
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    }
}
