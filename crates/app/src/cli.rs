//! The command line of contract §1.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Convosphere Auth: the identity and access service of Convosphere AI.
#[derive(Debug, Parser)]
#[command(name = "convosphere-auth", version, about)]
pub struct Cli {
    /// A TOML file of settings (keys as the AUTH_ variables, lower-case, without AUTH_);
    /// environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database if needed, then serve HTTP until SIGTERM/SIGINT.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Operator commands on one account.
    #[command(subcommand)]
    User(UserCommand),
}

/// Operator commands on one account.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Change the plan: free, starter, business or pro.
    SetPlan {
        /// The account's e-mail address.
        email: String,
        /// The new plan.
        plan: String,
    },
    /// Suspend the account: logins refused, sessions ended, API keys refused.
    Lock {
        /// The account's e-mail address.
        email: String,
    },
    /// Lift a suspension or a failed-login lockout.
    Unlock {
        /// The account's e-mail address.
        email: String,
    },
    /// Mark the e-mail address verified.
    VerifyEmail {
        /// The account's e-mail address.
        email: String,
    },
    /// Print the account's security events, newest first.
    Events {
        /// The account's e-mail address.
        email: String,
        /// How many events at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the account's daily usage totals and its busiest keys.
    Usage {
        /// The account's e-mail address.
        email: String,
        /// How many days, today included (at most 400).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=400))]
        days: u32,
    },
    /// Delete the account as `DELETE /v1/me` does: sessions end, keys are
    /// revoked, passkeys and provider links go, the profile is erased.
    Delete {
        /// The account's e-mail address.
        email: String,
    },
}

/// An account's usage as lines for people: a line a day (UTC), then the keys, busiest first.
pub fn usage_lines(report: &convosphere_domain::auth::usage::AccountReport) -> String {
    let usage = &report.usage;
    let mut lines = vec![format!(
        "{} ({} plan, {} requests a minute)",
        report.user.email,
        report.user.plan.as_str(),
        usage.limit_per_minute
    )];
    lines.push(format!(
        "{:<10}  {:>10}  {:>12}  {:>18}  {:>15}",
        "day", "allowed", "rate_limited", "insufficient_scope", "peak_per_minute"
    ));
    for bucket in &usage.buckets {
        let c = &bucket.counts;
        lines.push(format!(
            "{:<10}  {:>10}  {:>12}  {:>18}  {:>15}",
            bucket.start.format("%Y-%m-%d"),
            c.allowed,
            c.rate_limited,
            c.insufficient_scope,
            c.peak_per_minute
        ));
    }
    let t = &usage.totals;
    lines.push(format!(
        "{:<10}  {:>10}  {:>12}  {:>18}",
        "total", t.allowed, t.rate_limited, t.insufficient_scope
    ));
    lines.push(String::new());
    if report.keys.is_empty() {
        lines.push("no API keys".into());
    }
    for (key, totals) in &report.keys {
        lines.push(format!(
            "{}  {:>10} requests  {}",
            key.prefix(),
            totals.requests(),
            key.name
        ));
    }
    lines.join("\n")
}

/// The events as lines for people: time, type, IP, user agent, details.
pub fn event_lines(events: &[convosphere_domain::SecurityEvent]) -> String {
    if events.is_empty() {
        return "no events".into();
    }
    events
        .iter()
        .map(|e| {
            let details: Vec<String> = e.details.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!(
                "{}  {:<18} {:<15} {:?} {}",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.kind.as_str(),
                e.ip.as_deref().unwrap_or("-"),
                e.user_agent.as_deref().unwrap_or("-"),
                details.join(" ")
            )
            .trim_end()
            .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
