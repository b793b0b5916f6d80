//! A real SMTP server for the tests: mailin-embedded (blocking, its own
//! threads), listening on a local port, keeping what it receives in memory.

use mailin_embedded::response::{AUTH_OK, INVALID_CREDENTIALS, OK};
use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One message as the server got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM`.
    pub envelope_from: String,
    /// `RCPT TO`.
    pub envelope_to: Vec<String>,
    /// The `AUTH PLAIN` identity, when the client logged in.
    pub authenticated_as: Option<(String, String)>,
    /// The message as sent after `DATA` (dot-unstuffed).
    pub data: Vec<u8>,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

#[derive(Clone)]
struct Collector {
    inbox: Inbox,
    credentials: Option<(String, String)>,
    reject_recipients: bool,
    authenticated_as: Option<(String, String)>,
    envelope_from: String,
    envelope_to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Collector {
    fn rcpt(&mut self, to: &str) -> Response {
        if self.reject_recipients {
            Response::custom(550, format!("5.1.1 <{to}>: Recipient address rejected: User unknown"))
        } else {
            OK
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.envelope_from = from.to_owned();
        self.envelope_to = to.to_vec();
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.inbox.lock().unwrap().push(Received {
            envelope_from: std::mem::take(&mut self.envelope_from),
            envelope_to: std::mem::take(&mut self.envelope_to),
            authenticated_as: self.authenticated_as.clone(),
            data: std::mem::take(&mut self.data),
        });
        OK
    }

    fn auth_plain(&mut self, _authorization_id: &str, authentication_id: &str, password: &str) -> Response {
        let presented = (authentication_id.to_owned(), password.to_owned());
        if self.credentials.as_ref() == Some(&presented) {
            self.authenticated_as = Some(presented);
            AUTH_OK
        } else {
            INVALID_CREDENTIALS
        }
    }
}

/// A running SMTP server. It runs until the test process ends.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    inbox: Inbox,
}

/// STARTTLS and `AUTH PLAIN` for a server.
pub struct Secured<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub user: &'a str,
    pub password: &'a str,
}

impl SmtpServer {
    /// A plain SMTP server on a free port.
    pub fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), None, false)
    }

    /// A server that refuses every recipient for good (550), quoting the address.
    pub fn start_rejecting() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), None, true)
    }

    /// A plain SMTP server on a given port (to bring one up late).
    pub fn start_on_port(port: u16) -> Self {
        Self::on(TcpListener::bind(("127.0.0.1", port)).unwrap(), None, false)
    }

    /// A server offering STARTTLS and requiring a login.
    pub fn start_secured(secured: Secured<'_>) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), Some(secured), false)
    }

    fn on(listener: TcpListener, secured: Option<Secured<'_>>, reject_recipients: bool) -> Self {
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let collector = Collector {
            inbox: Arc::clone(&inbox),
            credentials: secured.as_ref().map(|s| (s.user.to_owned(), s.password.to_owned())),
            reject_recipients,
            authenticated_as: None,
            envelope_from: String::new(),
            envelope_to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(collector);
        server
            .with_name("smtp.test")
            .with_num_threads(4)
            .with_tcp_listener(listener);
        if let Some(secured) = secured {
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path: secured.cert.display().to_string(),
                    key_path: secured.key.display().to_string(),
                })
                .unwrap()
                .with_auth(AuthMechanism::Plain);
        }
        std::thread::spawn(move || {
            if let Err(error) = server.serve() {
                panic!("the test SMTP server stopped: {error}");
            }
        });
        Self { port, inbox }
    }

    /// What arrived so far.
    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `count` messages arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..200 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} messages, the server got {}", self.received().len());
    }
}

/// A port nobody listens on (free a moment ago).
pub fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A listener that accepts TCP connections but never says a word: a hung server.
pub fn silent_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}
