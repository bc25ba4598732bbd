#![forbid(unsafe_code)]
//! The protocol-limit baseline: answers `action=DUNNO` to every policy request.

use clap::Parser;
use spamgate_loadgen::Target;
use spamgate_loadgen::baseline::{serve_tcp, serve_unix};

/// Frames Postfix policy requests by their empty line and answers DUNNO, doing no other
/// work: the most any policy server can reach on this machine.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// `HOST:PORT` or `unix:PATH`.
    #[arg(long, default_value = "127.0.0.1:10040")]
    listen: Target,
    /// Runtime worker threads (default: one per CPU, as spamgate).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        match &cli.listen {
            Target::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
                serve_tcp(listener).await?;
            }
            Target::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = tokio::net::UnixListener::bind(path)?;
                serve_unix(listener).await?;
            }
        }
        Ok(())
    })
}
