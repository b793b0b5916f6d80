//! The e-mails' words: a subject, a plain-text part and an HTML part per kind.
//!
//! Every value put into the HTML is escaped. Links appear twice, as a button
//! and as text to copy, because some mail clients strip buttons and some
//! users cannot click.

use convosphere_domain::ports::{Mail, UnusualUse};
use std::fmt::Write as _;
use std::time::Duration;

/// The product's name as people see it.
pub const PRODUCT: &str = "Convosphere AI";

/// One e-mail, rendered.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedMail {
    /// The `Subject`.
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part.
    pub html: String,
}

impl std::fmt::Debug for RenderedMail {
    /// Shows the subject only: the parts hold links.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedMail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The templates, with the link lifetimes they mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Templates {
    /// How long a verification link works.
    pub email_verify_ttl: Duration,
    /// How long a reset link works.
    pub password_reset_ttl: Duration,
    /// How long a change-of-address link works.
    pub email_change_ttl: Duration,
}

impl Templates {
    /// Templates that tell these link lifetimes.
    pub fn new(email_verify_ttl: Duration, password_reset_ttl: Duration, email_change_ttl: Duration) -> Self {
        Self {
            email_verify_ttl,
            password_reset_ttl,
            email_change_ttl,
        }
    }

    /// Renders one e-mail.
    pub fn render(&self, mail: &Mail) -> RenderedMail {
        match mail {
            Mail::VerifyEmail { name, link, .. } => {
                let ttl = human_duration(self.email_verify_ttl);
                Page {
                    subject: format!("Confirm your email address for {PRODUCT}"),
                    greeting: greeting(name),
                    intro: format!("Welcome to {PRODUCT}! Please confirm your email address to finish creating your account."),
                    actions: vec![Action {
                        label: "Confirm my email address",
                        link,
                    }],
                    outro: vec![
                        format!("This link works for {ttl} and only once."),
                        format!("If you did not sign up for {PRODUCT}, you can ignore this email."),
                    ],
                }
            }
            Mail::PasswordReset { name, link, .. } => {
                let ttl = human_duration(self.password_reset_ttl);
                Page {
                    subject: format!("Reset your {PRODUCT} password"),
                    greeting: greeting(name),
                    intro: format!("We received a request to reset the password of your {PRODUCT} account. Choose a new password here:"),
                    actions: vec![Action {
                        label: "Choose a new password",
                        link,
                    }],
                    outro: vec![
                        format!("This link works for {ttl} and only once. Setting a new password logs you out everywhere."),
                        "If you did not ask for this, you can ignore this email: your password stays as it is.".to_owned(),
                    ],
                }
            }
            Mail::SignupAttempt {
                name,
                login_link,
                forgot_link,
                ..
            } => Page {
                subject: format!("Someone tried to sign up to {PRODUCT} with your email address"),
                greeting: greeting(name),
                intro: format!("Someone, maybe you, tried to create a new {PRODUCT} account with this email address. You already have an account, so nothing was changed."),
                actions: vec![
                    Action {
                        label: "Log in",
                        link: login_link,
                    },
                    Action {
                        label: "Forgot your password? Reset it",
                        link: forgot_link,
                    },
                ],
                outro: vec!["If this was not you, you can ignore this email: your account is safe.".to_owned()],
            },
            Mail::PasswordWasReset {
                name,
                active_keys,
                keys_link,
                ..
            } => Page {
                subject: format!("Your {PRODUCT} password was reset"),
                greeting: greeting(name),
                intro: format!("The password of your {PRODUCT} account was just reset with a link we e-mailed, and every session was logged out."),
                actions: vec![Action {
                    label: "Review your API keys",
                    link: keys_link,
                }],
                outro: if active_keys.is_empty() {
                    vec!["Your account has no active API keys.".to_owned()]
                } else {
                    let keys = active_keys.iter().map(|(name, prefix)| format!("{name} ({prefix}…)"));
                    vec![
                        format!("A password reset does not revoke API keys, since programs use them. These still work: {}.", keys.collect::<Vec<_>>().join(", ")),
                        "If you did not reset your password, revoke any key you do not recognise.".to_owned(),
                    ]
                },
            },
            Mail::PasswordChanged { name, forgot_link, .. } => Page {
                subject: format!("Your {PRODUCT} password was changed"),
                greeting: greeting(name),
                intro: format!("The password of your {PRODUCT} account was just changed. If this was you, there is nothing more to do."),
                actions: vec![Action {
                    label: "Not you? Reset your password now",
                    link: forgot_link,
                }],
                outro: vec!["If you did not change it, reset your password right away and check the sessions of your account.".to_owned()],
            },
            Mail::UnusualKeyUse {
                name,
                key_name,
                prefix,
                what,
                at,
                key_link,
                ..
            } => {
                let when = at.format("%Y-%m-%d %H:%M UTC");
                let (subject, intro) = match what {
                    UnusualUse::NewNetwork(network) => (
                        format!("Your API key {key_name} was used from a new network"),
                        format!("Your {PRODUCT} API key {key_name} ({prefix}…) was used from the network {network} at {when}. It had not been used from there in the last 30 days."),
                    ),
                    UnusualUse::RateLimited => (
                        format!("Your API key {key_name} reached its rate limit"),
                        format!("Your {PRODUCT} API key {key_name} ({prefix}…) was refused for passing your plan's rate limit at {when}, for the first time today."),
                    ),
                };
                Page {
                    subject,
                    greeting: greeting(name),
                    intro,
                    actions: vec![Action {
                        label: "Review or revoke the key",
                        link: key_link,
                    }],
                    outro: vec![
                        "If this was you or one of your programs, there is nothing more to do.".to_owned(),
                        "If not, revoke the key now: it stops working at once. We send at most one such e-mail per key and day.".to_owned(),
                    ],
                }
            }
            Mail::ConfirmEmailChange { name, link, .. } => {
                let ttl = human_duration(self.email_change_ttl);
                Page {
                    subject: format!("Confirm your new email address for {PRODUCT}"),
                    greeting: greeting(name),
                    intro: format!("You asked to use this address for your {PRODUCT} account. Confirm it to make the change:"),
                    actions: vec![Action {
                        label: "Confirm my new email address",
                        link,
                    }],
                    outro: vec![
                        format!("This link works for {ttl} and only once. Until then your account keeps its current address."),
                        "Confirming logs out every other session of your account.".to_owned(),
                        "If you did not ask for this, you can ignore this email.".to_owned(),
                    ],
                }
            }
            Mail::EmailChangeRequested {
                name,
                new_email,
                forgot_link,
                ..
            } => Page {
                subject: format!("A change of your {PRODUCT} email address was requested"),
                greeting: greeting(name),
                intro: format!("Someone signed in to your {PRODUCT} account asked to change its email address to {new_email}. Nothing changes unless the link we sent to that address is used."),
                actions: vec![Action {
                    label: "Not you? Reset your password now",
                    link: forgot_link,
                }],
                outro: vec!["If this was not you, reset your password right away: a reset logs out every session and cancels the change.".to_owned()],
            },
            Mail::EmailChangeAttempt { name, login_link, .. } => Page {
                subject: format!("Someone tried to use your email address on {PRODUCT}"),
                greeting: greeting(name),
                intro: format!("Someone, maybe you, tried to move another {PRODUCT} account to this email address. It already belongs to your account, so nothing was changed."),
                actions: vec![Action {
                    label: "Log in",
                    link: login_link,
                }],
                outro: vec!["If this was not you, you can ignore this email: your account is safe.".to_owned()],
            },
            Mail::AccountDeleted { name, signup_link, .. } => Page {
                subject: format!("Your {PRODUCT} account was deleted"),
                greeting: greeting(name),
                intro: format!("Your {PRODUCT} account and its data were deleted: its sessions were logged out, its API keys stopped working, and its passkeys and linked providers were removed."),
                actions: vec![Action {
                    label: "Create a new account",
                    link: signup_link,
                }],
                outro: vec!["We keep the account's security log, without addresses, names or devices, for a limited time. If you did not ask for this, contact our support at once.".to_owned()],
            },
        }
        .render()
    }
}

/// The link a developer needs from an outbox message (logged in outbox mode only).
pub(crate) fn primary_link(mail: &Mail) -> &str {
    match mail {
        Mail::VerifyEmail { link, .. } | Mail::PasswordReset { link, .. } => link,
        Mail::SignupAttempt { login_link, .. } => login_link,
        Mail::PasswordWasReset { keys_link, .. } => keys_link,
        Mail::PasswordChanged { forgot_link, .. } => forgot_link,
        Mail::UnusualKeyUse { key_link, .. } => key_link,
        Mail::ConfirmEmailChange { link, .. } => link,
        Mail::EmailChangeRequested { forgot_link, .. } => forgot_link,
        Mail::EmailChangeAttempt { login_link, .. } => login_link,
        Mail::AccountDeleted { signup_link, .. } => signup_link,
    }
}

struct Action<'a> {
    label: &'static str,
    link: &'a str,
}

/// The parts every e-mail has, in order.
struct Page<'a> {
    subject: String,
    greeting: String,
    intro: String,
    actions: Vec<Action<'a>>,
    outro: Vec<String>,
}

impl Page<'_> {
    fn render(self) -> RenderedMail {
        RenderedMail {
            text: self.text(),
            html: self.html(),
            subject: self.subject,
        }
    }

    fn text(&self) -> String {
        let mut text = format!("{}\n\n{}\n\n", self.greeting, self.intro);
        for action in &self.actions {
            // `writeln!` into a String cannot fail.
            let _ = writeln!(text, "{}:\n{}\n", action.label, action.link);
        }
        for paragraph in &self.outro {
            let _ = writeln!(text, "{paragraph}\n");
        }
        let _ = writeln!(text, "The {PRODUCT} team");
        text
    }

    fn html(&self) -> String {
        let mut body = String::new();
        let _ = write!(
            body,
            "<p style=\"margin:0 0 16px\">{}</p>\n<p style=\"margin:0 0 24px\">{}</p>\n",
            escape(&self.greeting),
            escape(&self.intro)
        );
        for action in &self.actions {
            let link = escape(action.link);
            let _ = write!(
                body,
                "<p style=\"margin:0 0 12px\"><a href=\"{link}\" style=\"display:inline-block;padding:12px 20px;\
                 background:#4f46e5;color:#ffffff;border-radius:6px;text-decoration:none;font-weight:600\">{label}</a></p>\n\
                 <p style=\"margin:0 0 24px;font-size:13px;color:#555555\">Or copy this link into your browser:<br>\
                 <a href=\"{link}\" style=\"color:#4f46e5;word-break:break-all\">{link}</a></p>\n",
                label = escape(action.label),
            );
        }
        for paragraph in &self.outro {
            let _ = writeln!(body, "<p style=\"margin:0 0 16px\">{}</p>", escape(paragraph));
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n</head>\n\
             <body style=\"margin:0;padding:0;background:#f4f4f7\">\n\
             <div style=\"max-width:560px;margin:0 auto;padding:32px 24px;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;\
             font-size:15px;line-height:1.5;color:#1f2937;background:#ffffff\">\n\
             <p style=\"margin:0 0 24px;font-size:18px;font-weight:700\">{product}</p>\n{body}\
             <p style=\"margin:24px 0 0;color:#555555\">The {product} team</p>\n</div>\n</body>\n</html>\n",
            title = escape(&self.subject),
            product = escape(PRODUCT),
        )
    }
}

fn greeting(name: &str) -> String {
    let name = display_name(name);
    if name.is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {name},")
    }
}

/// A name fit for a greeting or a header: no control characters, no
/// surrounding space, at most 100 characters.
pub(crate) fn display_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(100)
        .collect();
    cleaned.trim().to_owned()
}

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// "24 hours", "1 hour", "30 minutes", "7 days", "1 hour 30 minutes".
pub fn human_duration(duration: Duration) -> String {
    const UNITS: [(u64, &str); 3] = [(3_600, "hour"), (60, "minute"), (1, "second")];
    let secs = duration.as_secs();
    if secs == 0 {
        return "a moment".to_owned();
    }
    // Whole days read well from two days on; a single day reads as 24 hours.
    if secs % 86_400 == 0 && secs >= 2 * 86_400 {
        return plural(secs / 86_400, "day");
    }
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        let count = rest / size;
        if count > 0 {
            parts.push(plural(count, unit));
            rest %= size;
        }
    }
    parts.join(" ")
}

fn plural(count: u64, unit: &str) -> String {
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convosphere_domain::Email;

    fn templates() -> Templates {
        Templates::new(
            Duration::from_secs(24 * 3600),
            Duration::from_secs(3600),
            Duration::from_secs(24 * 3600),
        )
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(24 * 3600)), "24 hours");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1 hour 30 minutes");
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(human_duration(Duration::from_secs(90_000)), "25 hours");
        assert_eq!(human_duration(Duration::from_secs(61)), "1 minute 1 second");
    }

    #[test]
    fn the_verification_mail_holds_the_link_and_its_lifetime() {
        let link = "https://auth.example.com/verify-email?token=abc_DEF-123";
        let mail = Mail::VerifyEmail {
            to: Email::parse("ada@example.com").unwrap(),
            name: "Ada".into(),
            link: link.into(),
        };
        let rendered = templates().render(&mail);
        assert!(rendered.subject.contains("Confirm your email"));
        assert!(rendered.text.contains(link));
        assert!(rendered.text.contains("works for 24 hours"));
        assert!(rendered.html.contains(&format!("href=\"{link}\"")));
        assert!(rendered.html.contains("works for 24 hours"));
        assert!(rendered.text.contains(PRODUCT));
    }

    #[test]
    fn the_reset_mail_tells_its_own_lifetime() {
        let mail = Mail::PasswordReset {
            to: Email::parse("ada@example.com").unwrap(),
            name: "Ada".into(),
            link: "https://auth.example.com/reset-password?token=t".into(),
        };
        let rendered = Templates::new(
            Duration::from_secs(60),
            Duration::from_secs(1800),
            Duration::from_secs(24 * 3600),
        )
        .render(&mail);
        assert!(rendered.text.contains("works for 30 minutes"), "{}", rendered.text);
    }

    #[test]
    fn interpolated_values_are_escaped_in_html() {
        let mail = Mail::SignupAttempt {
            to: Email::parse("ada@example.com").unwrap(),
            name: "<script>alert('x')</script> & \"friends\"".into(),
            login_link: "https://auth.example.com/login?a=1&b=\"2\"".into(),
            forgot_link: "https://auth.example.com/forgot-password".into(),
        };
        let rendered = templates().render(&mail);
        assert!(!rendered.html.contains("<script>"));
        assert!(rendered
            .html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;friends&quot;"));
        assert!(rendered
            .html
            .contains("href=\"https://auth.example.com/login?a=1&amp;b=&quot;2&quot;\""));
        // The plain-text part is not HTML: it keeps the link as given.
        assert!(rendered.text.contains("https://auth.example.com/login?a=1&b=\"2\""));
    }

    #[test]
    fn the_unusual_use_mail_names_the_key_the_network_and_the_time_and_links_to_it() {
        let link = "https://auth.example.com/settings/api-keys/0b6c3a0e-54a2-4b87-9f1c-2d7a4f0c9e11";
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:34:56Z")
            .unwrap()
            .to_utc();
        let mail = |what| Mail::UnusualKeyUse {
            to: Email::parse("ada@example.com").unwrap(),
            name: "Ada".into(),
            key_name: "CI <deploy>".into(),
            prefix: "cs_AbCdEfGh".into(),
            what,
            at,
            key_link: link.into(),
        };
        let rendered = templates().render(&mail(UnusualUse::NewNetwork("203.0.113.0/24".into())));
        assert!(rendered.subject.contains("new network"), "{}", rendered.subject);
        for part in [&rendered.text, &rendered.html] {
            assert!(part.contains("cs_AbCdEfGh"));
            assert!(part.contains("203.0.113.0/24"));
            assert!(part.contains("2026-03-01 12:34 UTC"));
            assert!(part.contains(link));
        }
        assert!(rendered.text.contains("CI <deploy>"));
        assert!(rendered.html.contains("CI &lt;deploy&gt;"));
        let limited = templates().render(&mail(UnusualUse::RateLimited));
        assert!(limited.subject.contains("rate limit"), "{}", limited.subject);
        assert!(limited.text.contains("first time today"));
    }

    #[test]
    fn names_lose_control_characters() {
        assert_eq!(display_name(" Ada\r\nBcc: x@y.z "), "Ada  Bcc: x@y.z");
        assert_eq!(greeting(" \t"), "Hello,");
    }
}
