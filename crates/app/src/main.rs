//! The `convosphere-auth` binary.

use clap::Parser;
use convosphere_auth::cli::{Cli, Command, UserCommand};
use convosphere_auth::config::Config;
use convosphere_auth::state::{open_store, AppState, StartError};
use convosphere_domain::Plan;
use std::process::ExitCode;

/// mimalloc: a request allocates and frees dozens of small buffers (headers,
/// JSON, log lines, cache copies); glibc's malloc took about a tenth of the
/// CPU time of `/v1/authz` (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs a command; the error is the one line printed on stderr (exit 1).
async fn run(cli: Cli) -> Result<(), StartError> {
    let config = Config::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve);
    let serving = matches!(command, Command::Serve);
    // Logs go to stderr: `info` for the server, `warn` for one-shot commands
    // (whose stderr is their one-line error), unless `RUST_LOG` says otherwise.
    let _log_guard = convosphere_auth::logging::init(config.log_format, if serving { "info" } else { "warn" }, serving);
    match command {
        Command::Serve => {
            let started = convosphere_auth::start(config).await?;
            started.server.await.map_err(|e| StartError(format!("server: {e}")))?;
            tracing::info!("stopped; delivering queued mail");
            started.state.shutdown().await;
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            store
                .migrate()
                .await
                .map_err(|e| StartError(format!("AUTH_DATABASE_URL: migration failed: {e}")))?;
            println!("migrations applied");
            Ok(())
        }
        Command::User(command) => {
            let store = open_store(&config).await?;
            store
                .migrate()
                .await
                .map_err(|e| StartError(format!("AUTH_DATABASE_URL: migration failed: {e}")))?;
            let state = AppState::build(config, store).await?;
            let auth = &state.auth;
            let message = match command {
                UserCommand::SetPlan { email, plan } => {
                    let plan: Plan = plan.parse().map_err(|e| StartError(format!("{e}")))?;
                    auth.admin_set_plan(&email, plan)
                        .await
                        .map(|u| format!("{} is now on the {} plan", u.email, plan))
                }
                UserCommand::Lock { email } => auth
                    .admin_lock(&email)
                    .await
                    .map(|u| format!("{} is suspended; its sessions have ended", u.email)),
                UserCommand::Unlock { email } => auth
                    .admin_unlock(&email)
                    .await
                    .map(|u| format!("{} is unlocked", u.email)),
                UserCommand::VerifyEmail { email } => auth
                    .admin_verify_email(&email)
                    .await
                    .map(|u| format!("{} is verified", u.email)),
                UserCommand::Events { email, limit } => auth
                    .admin_events(&email, limit)
                    .await
                    .map(|events| convosphere_auth::cli::event_lines(&events)),
                UserCommand::Delete { email } => auth.admin_delete(&email).await.map(|u| {
                    format!(
                        "{} is deleted: its sessions ended, its keys were revoked, its data erased",
                        u.email
                    )
                }),
                UserCommand::Usage { email, days } => auth
                    .admin_usage(&email, days)
                    .await
                    .map(|report| convosphere_auth::cli::usage_lines(&report)),
            }
            .map_err(|e| StartError(e.to_string()))?;
            state.shutdown().await;
            println!("{message}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on bad usage
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("convosphere-auth: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convosphere-auth: {e}");
            ExitCode::FAILURE
        }
    }
}
