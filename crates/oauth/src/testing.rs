//! Test support (feature `testing`): a real OpenID Provider, panva's
//! `oidc-provider` run by node from `tests/oidc/`; a fake of GitHub's and
//! Facebook's OAuth endpoints ([`FakeGithubFacebook`]: neither runs
//! locally); and a [`Browser`] that keeps cookies and follows redirects one
//! at a time.

mod fake;

pub use fake::{access_token, FakeGithubFacebook, Person, Seen};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The client registered at the test provider.
pub const CLIENT_ID: &str = "convosphere-test";
/// Its secret.
pub const CLIENT_SECRET: &str = "convosphere-test-secret";

/// A running `oidc-provider`; stopped when dropped.
pub struct TestOidcProvider {
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
    child: Child,
}

/// Where `provider.js` and its `package.json` are.
pub fn provider_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc"))
}

fn skip(why: &str) -> Option<TestOidcProvider> {
    // CI installs node and the modules: there, a missing piece is a failure.
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("the OpenID Provider tests cannot run: {why}");
    }
    eprintln!("SKIPPED: the OpenID Provider tests need node and its modules: {why}");
    None
}

impl TestOidcProvider {
    /// Starts a provider whose client accepts these redirect URIs. `None`,
    /// with a notice on stderr, when `node` or the npm modules are missing
    /// (outside CI, where that fails the test instead).
    pub fn start(redirect_uris: &[&str]) -> Option<Self> {
        let dir = provider_dir();
        if Command::new("node").arg("--version").output().is_err() {
            return skip("`node` is not installed");
        }
        if !dir.join("node_modules/oidc-provider").is_dir() {
            return skip(&format!("run `npm ci --prefix {}` first", dir.display()));
        }
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(&dir)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URIS", redirect_uris.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("node provider.js did not start: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout of node"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            // Keep draining: node dies of EPIPE if what it logs goes nowhere.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the OpenID Provider did not start within 30 s");
            }
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("provider.js printed {line:?}: {e}"));
        let issuer = ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("provider.js printed no issuer: {line:?}"))
            .to_owned();
        Some(Self { issuer, child })
    }
}

impl Drop for TestOidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test account of the provider, named by `login_hint` (see `provider.js`).
#[derive(Debug, Clone)]
pub struct Account {
    /// The `sub` prefix (the whole hint is the subject).
    pub sub: String,
    /// The e-mail address, if any.
    pub email: Option<String>,
    /// Whether the provider says it is verified.
    pub verified: bool,
    /// Whether the address is given only at the userinfo endpoint.
    pub email_only_at_userinfo: bool,
}

impl Account {
    /// A verified address in the ID token.
    pub fn new(sub: &str, email: &str) -> Self {
        Self {
            sub: sub.into(),
            email: Some(email.into()),
            verified: true,
            email_only_at_userinfo: false,
        }
    }

    /// The `login_hint` that logs this account in.
    pub fn login_hint(&self) -> String {
        let mut hint = format!("sub={};name=Ada Lovelace", self.sub);
        if let Some(email) = &self.email {
            hint.push_str(&format!(";email={email}"));
        }
        if !self.verified {
            hint.push_str(";verified=0");
        }
        if self.email_only_at_userinfo {
            hint.push_str(";at=userinfo");
        }
        hint
    }
}

/// A browser: keeps cookies, follows redirects one at a time.
#[derive(Clone)]
pub struct Browser {
    /// The client (cookie store on, redirects off).
    pub client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_else(|e| panic!("no HTTP client: {e}")),
        }
    }

    /// GETs `url` and follows redirects until one leads to a URL for
    /// which `stop` is true; answers that URL (not fetched). Panics after
    /// ten hops or on an answer that is not a redirect.
    pub async fn follow_until(&self, url: &str, stop: impl Fn(&str) -> bool) -> String {
        let mut url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        for _ in 0..10 {
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let status = response.status();
            let Some(location) = response.headers().get(reqwest::header::LOCATION).cloned() else {
                let body = response.text().await.unwrap_or_default();
                panic!("GET {url} answered {status} without a redirect: {body}");
            };
            let location = location.to_str().unwrap_or_else(|e| panic!("Location: {e}"));
            let next = url
                .join(location)
                .unwrap_or_else(|e| panic!("Location {location}: {e}"));
            if stop(next.as_str()) {
                return next.into();
            }
            url = next;
        }
        panic!("more than ten redirects");
    }
}
