//! Ports: what the use cases need from the outside world.
//!
//! Adapters implement these traits (storage, crypto, mail, rate limits);
//! tests implement them with in-memory fakes. Async methods return
//! `impl Future + Send` so that use cases stay generic and allocation-free.

use crate::profile::ProfileUpdate;
use crate::{
    Email, EndReason, EventKind, InfraError, NewUser, Password, PasswordHash, Plan, Session, SessionId, TokenHash,
    TokenKind, User, UserId,
};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;

mod account;
mod passkeys;
pub use account::AccountRepository;
pub use passkeys::{PasskeyRepository, PasskeyVerifier};

/// The current time.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// Cryptographically secure randomness.
pub trait Rng: Send + Sync {
    /// Fills `dest` with random bytes.
    fn fill_bytes(&self, dest: &mut [u8]);
}

/// Authenticated encryption of secrets kept at rest (TOTP secrets), with
/// a key from configuration.
pub trait SecretBox: Send + Sync {
    /// Encrypts `plaintext`, bound to `context` (associated data: whose
    /// secret it is, such as the user id); the answer is printable and
    /// holds its own nonce.
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, InfraError>;

    /// Decrypts what [`seal`](SecretBox::seal) made with the same `context`;
    /// an error if it was tampered with, sealed under another key, or
    /// sealed for another context (another user's secret copied over).
    fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, InfraError>;
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account has this e-mail address.
    #[error("the e-mail address is taken")]
    EmailTaken,
    /// Storage failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// The result of one failed password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedLogin {
    /// Whether this failure locked the account.
    pub locked: bool,
}

/// A password login refused at its password check, written by
/// [`UserRepository::record_refused_login`].
#[derive(Debug, Clone, Copy)]
pub enum RefusedLogin<'a> {
    /// An account's: its `login.failed` event and, when `count`, one more
    /// failed login.
    Account {
        /// The event, of the account that was tried.
        event: &'a crate::SecurityEvent,
        /// Whether the refusal counts toward the lockout.
        count: bool,
    },
    /// An address that has no account: when and from where (never the address).
    UnknownAddress {
        /// When.
        at: DateTime<Utc>,
        /// From where.
        client: &'a crate::ClientContext,
    },
}

/// Stored accounts.
pub trait UserRepository: Send + Sync {
    /// Creates an account; [`CreateUserError::EmailTaken`] if the address is in use.
    fn create_user(&self, user: &NewUser) -> impl Future<Output = Result<User, CreateUserError>> + Send;

    /// Creates an account (a signup) with its e-mail verification token
    /// (by hash) and its first audit event, in one transaction: all three
    /// or, on [`CreateUserError::EmailTaken`] or a failure, none.
    fn create_user_with_link(
        &self,
        user: &NewUser,
        token: &TokenHash,
        token_expires_at: DateTime<Utc>,
        event: &crate::SecurityEvent,
    ) -> impl Future<Output = Result<User, CreateUserError>> + Send;

    /// The account with this id.
    fn user_by_id(&self, id: UserId) -> impl Future<Output = Result<Option<User>, InfraError>> + Send;

    /// The account with this (normalized) address.
    fn user_by_email(&self, email: &Email) -> impl Future<Output = Result<Option<User>, InfraError>> + Send;

    /// Applies a profile change; `None` if the account does not exist.
    fn update_profile(
        &self,
        id: UserId,
        update: &ProfileUpdate,
    ) -> impl Future<Output = Result<Option<User>, InfraError>> + Send;

    /// Marks the e-mail address verified; `None` if the account does not exist.
    fn set_email_verified(&self, id: UserId) -> impl Future<Output = Result<Option<User>, InfraError>> + Send;

    /// Replaces the password hash and, with it, ends every outstanding
    /// password-reset link and change of address of the user: no link
    /// outlives the password it was sent for (a change, a reset, an
    /// operator's reset), and a reset cancels a change that was not theirs.
    fn set_password_hash(&self, id: UserId, hash: &PasswordHash)
        -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Counts one failed password check, atomically under concurrency.
    ///
    /// Unless the account is locked at `now`, adds one to `failed_logins`;
    /// when that reaches `threshold`, sets `locked_until` and resets the
    /// count to zero, and answers `locked: true`. While the account is
    /// locked, nothing is counted. Exactly one of any number of parallel
    /// calls sees `locked: true` for one lockout.
    fn record_failed_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        threshold: u32,
        locked_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<FailedLogin, InfraError>> + Send;

    /// Writes a login refused at its password check, in one transaction
    /// made of the same statements whether or not the address has an
    /// account, so that nobody timing logins can tell which addresses do:
    /// the account's row locked and, when counted, one more failed login
    /// (as [`record_failed_login`](Self::record_failed_login)); then one row
    /// of an audit trail, the account's event or, for an unknown address,
    /// the instance's trail of unknown-address attempts.
    fn record_refused_login(
        &self,
        refused: RefusedLogin<'_>,
        threshold: u32,
        locked_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<FailedLogin, InfraError>> + Send;

    /// Sets `failed_logins` to zero and lifts a failed-login lockout.
    fn clear_failed_logins(&self, id: UserId) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Changes the plan.
    fn set_plan(&self, id: UserId, plan: Plan) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Suspends or reinstates the account.
    fn set_suspended(&self, id: UserId, suspended: bool) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// What became of a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is now used, the replacement is current,
    /// and the session was marked active at `now`.
    Rotated(Session),
    /// The token had been used before (or lost a race to a parallel use):
    /// its session (returned, as ended) has been ended with [`EndReason::RefreshReuse`].
    Reused(Session),
    /// The token's session is ended, idle past the cutoff or past its
    /// absolute end. Nothing was changed.
    Expired,
    /// No such token.
    Unknown,
}

/// A session to open, as [`SessionRepository::create_session`] (or a
/// passkey sign-in, [`PasskeyRepository::sign_in_with_passkey`]) stores it.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// The session, as it starts (`created_at` is now).
    pub session: &'a Session,
    /// The hash of its first refresh token.
    pub refresh: &'a TokenHash,
    /// The most active sessions the user may have, this one included.
    pub max_active: u32,
    /// A session is active when not ended, `expires_at > now` and
    /// `last_active_at > idle_cutoff`.
    pub idle_cutoff: DateTime<Utc>,
    /// The event of the sign-in that opened it.
    pub signed_in: &'a crate::SecurityEvent,
}

/// Stored sessions and their refresh tokens.
pub trait SessionRepository: Send + Sync {
    /// Stores a new session with its first refresh token and the event of
    /// the sign-in that opened it (committed with the session: the audit
    /// trail never lacks the sign-in of a session, nor shows one that
    /// opened none), then ends the oldest active sessions of the user
    /// beyond the cap, atomically under concurrency (parallel logins never
    /// leave more than the cap). See [`NewSession`]. Returns the ids it ended.
    fn create_session(&self, new: &NewSession<'_>) -> impl Future<Output = Result<Vec<SessionId>, InfraError>> + Send;

    /// Uses a refresh token once and stores its replacement. Two parallel
    /// calls with the same token: at most one is `Rotated`, and the session
    /// ends. See [`RefreshOutcome`].
    fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        replacement: &TokenHash,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<RefreshOutcome, InfraError>> + Send;

    /// The session with this id, ended or not.
    fn session(&self, id: SessionId) -> impl Future<Output = Result<Option<Session>, InfraError>> + Send;

    /// Records a re-authentication of an active session: its `auth_time`
    /// and `amr` become these, and with a `replacement` every refresh token
    /// of the session is used up and the replacement is its new one (as a
    /// rotation would leave it). Every instance forgets what it remembered
    /// of the session. `false` if the session is not `user`'s or has ended.
    fn reauthenticate_session(
        &self,
        user: UserId,
        id: SessionId,
        auth_time: DateTime<Utc>,
        amr: &[crate::AuthMethod],
        replacement: Option<&TokenHash>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Records use of the session at `now`.
    fn touch_session(&self, id: SessionId, now: DateTime<Utc>) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Ends one session of `user`; `false` if it was not theirs or already ended.
    fn end_session(
        &self,
        user: UserId,
        id: SessionId,
        now: DateTime<Utc>,
        reason: EndReason,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Ends every session of `user` but `except`; returns the ids ended.
    fn end_user_sessions(
        &self,
        user: UserId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
        reason: EndReason,
    ) -> impl Future<Output = Result<Vec<SessionId>, InfraError>> + Send;

    /// The active sessions of `user` (see [`create_session`](Self::create_session)), newest first.
    fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Session>, InfraError>> + Send;
}

/// Stored one-time tokens (e-mail verification, password reset).
pub trait OneTimeTokenRepository: Send + Sync {
    /// Stores a token for `user`; every older token of the same kind for
    /// that user stops working.
    fn issue_token(
        &self,
        user: UserId,
        kind: TokenKind,
        hash: &TokenHash,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The owner of a usable (unused, unexpired) token, without using it.
    fn peek_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<UserId>, InfraError>> + Send;

    /// Uses a token: its owner if it was usable. Of parallel calls with
    /// one token, exactly one gets the owner.
    fn consume_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<UserId>, InfraError>> + Send;
}

/// Everything the auth use cases keep: one storage adapter implements it all.
pub trait Store: UserRepository + SessionRepository + OneTimeTokenRepository + MfaRepository + EventRepository {}
impl<T: UserRepository + SessionRepository + OneTimeTokenRepository + MfaRepository + EventRepository> Store for T {}

/// Hashes and checks passwords (argon2id in production).
pub trait PasswordHasher: Send + Sync {
    /// Hashes a new password with a fresh salt.
    fn hash(&self, password: &Password) -> impl Future<Output = Result<PasswordHash, InfraError>> + Send;

    /// Checks a password against a stored hash in constant time. With
    /// `None` (no such account, or no password), it checks against a dummy
    /// hash and answers `false`, so that both cases cost the same time.
    fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;
}

/// The claims of an access token this service issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user (`sub`).
    pub user_id: UserId,
    /// The session (`sid`).
    pub session_id: SessionId,
    /// The plan at issue time (`plan`).
    pub plan: Plan,
    /// Issue time (`iat`).
    pub issued_at: DateTime<Utc>,
    /// Expiry (`exp`).
    pub expires_at: DateTime<Utc>,
    /// Unique token id (`jti`).
    pub token_id: uuid::Uuid,
    /// The session's last sign-in or re-authentication (`auth_time`).
    pub auth_time: DateTime<Utc>,
    /// How the user proved who they are then (`amr`, RFC 8176 names).
    pub amr: Vec<crate::AuthMethod>,
}

impl AccessClaims {
    /// The scopes the token holds: every one, as the contract says of a user
    /// access token (an API key holds its own, which only `/v1/authz` knows).
    pub fn scopes(&self) -> crate::ScopeSet {
        crate::ScopeSet::all()
    }
}

/// Why an access token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenVerifyError {
    /// Well-formed and correctly signed, but past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Malformed, wrongly signed, wrong issuer or audience.
    #[error("the token is invalid")]
    Invalid,
}

/// Signs and verifies access tokens (JWT, EdDSA).
pub trait TokenSigner: Send + Sync {
    /// Signs the claims; the signer adds `iss`, `aud`, `typ` and `kid`.
    fn sign(&self, claims: &AccessClaims) -> Result<String, InfraError>;

    /// Verifies a token at `now`, with no leeway on `exp`.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenVerifyError>;
}

/// An e-mail to send. `Debug` shows the kind and the recipient, never a link.
#[derive(Clone)]
pub enum Mail {
    /// "Confirm your address": holds the verification link.
    VerifyEmail {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// `<public URL>/verify-email?token=…`
        link: String,
    },
    /// "Reset your password": holds the reset link.
    PasswordReset {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// `<public URL>/reset-password?token=…`
        link: String,
    },
    /// "Someone tried to sign up with your address".
    SignupAttempt {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// The login page.
        login_link: String,
        /// The forgotten-password page.
        forgot_link: String,
    },
    /// "Your password was reset": the keys that still work, since a reset
    /// does not revoke them.
    PasswordWasReset {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// The active API keys, by name and prefix.
        active_keys: Vec<(String, String)>,
        /// The API keys page.
        keys_link: String,
    },
    /// "Your password was changed".
    PasswordChanged {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// The forgotten-password page, in case it was not them.
        forgot_link: String,
    },
    /// "Your API key was used in an unusual way".
    UnusualKeyUse {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// The key's name.
        key_name: String,
        /// The key's prefix.
        prefix: String,
        /// What was unusual.
        what: UnusualUse,
        /// When (UTC).
        at: DateTime<Utc>,
        /// The key's page, where it can be revoked.
        key_link: String,
    },
    /// "Confirm your new address": to the new address, with its link.
    ConfirmEmailChange {
        /// Recipient: the new address.
        to: Email,
        /// The account's name.
        name: String,
        /// `<public URL>/confirm-email?token=…`
        link: String,
    },
    /// "A change of your address was asked for": to the old address.
    EmailChangeRequested {
        /// Recipient: the current address.
        to: Email,
        /// Recipient's name.
        name: String,
        /// The address asked for.
        new_email: Email,
        /// The forgotten-password page: a reset ends every session and the change.
        forgot_link: String,
    },
    /// "Someone tried to move another account to your address": to an
    /// address that is taken, instead of a link.
    EmailChangeAttempt {
        /// Recipient.
        to: Email,
        /// Recipient's name.
        name: String,
        /// The login page.
        login_link: String,
    },
    /// "Your account was deleted".
    AccountDeleted {
        /// Recipient: the address the account had.
        to: Email,
        /// The account's name.
        name: String,
        /// The signup page.
        signup_link: String,
    },
}

/// What was unusual about a key's use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnusualUse {
    /// Used from a client network it had not used in 30 days (`203.0.113.0/24`).
    NewNetwork(String),
    /// Refused with `rate_limited` for the first time today.
    RateLimited,
}

impl Mail {
    /// The recipient.
    pub fn to(&self) -> &Email {
        self.recipient().0
    }

    /// The recipient's name.
    pub fn name(&self) -> &str {
        self.recipient().1
    }

    fn recipient(&self) -> (&Email, &str) {
        match self {
            Mail::VerifyEmail { to, name, .. }
            | Mail::PasswordReset { to, name, .. }
            | Mail::SignupAttempt { to, name, .. }
            | Mail::PasswordWasReset { to, name, .. }
            | Mail::PasswordChanged { to, name, .. }
            | Mail::UnusualKeyUse { to, name, .. }
            | Mail::ConfirmEmailChange { to, name, .. }
            | Mail::EmailChangeRequested { to, name, .. }
            | Mail::EmailChangeAttempt { to, name, .. }
            | Mail::AccountDeleted { to, name, .. } => (to, name),
        }
    }

    /// A short name of the kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Mail::VerifyEmail { .. } => "verify_email",
            Mail::PasswordReset { .. } => "password_reset",
            Mail::SignupAttempt { .. } => "signup_attempt",
            Mail::PasswordWasReset { .. } => "password_was_reset",
            Mail::PasswordChanged { .. } => "password_changed",
            Mail::UnusualKeyUse { .. } => "unusual_key_use",
            Mail::ConfirmEmailChange { .. } => "confirm_email_change",
            Mail::EmailChangeRequested { .. } => "email_change_requested",
            Mail::EmailChangeAttempt { .. } => "email_change_attempt",
            Mail::AccountDeleted { .. } => "account_deleted",
        }
    }
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mail({} to {})", self.kind(), self.to())
    }
}

/// Sends e-mail. Implementations queue and retry: `send` returns once the
/// message is accepted for delivery, not when the SMTP server answers.
pub trait Mailer: Send + Sync {
    /// Accepts a message for delivery.
    fn send(&self, mail: Mail) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// The answer of a rate limiter to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The budget per window (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the budget is full again (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// When refused: until one request is allowed again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Whose requests a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateSubject {
    /// An account: all of its keys and sessions share its plan's budget.
    Account(UserId),
    /// A client network (the unauthenticated endpoints): an IPv4 address,
    /// or the /64 of an IPv6 one. Made by [`RateSubject::client`].
    Ip(std::net::IpAddr),
    /// The mailbox of an account: the links and notices sent to it.
    Mailbox(UserId),
    /// The failed credential checks of a client network (unknown keys and
    /// tokens), as [`network`] makes it.
    FailedChecks(std::net::IpAddr),
}

impl RateSubject {
    /// The subject of a client's requests. One IPv6 host is usually given a
    /// whole /64 and may pick any address in it, so an IPv6 client is counted
    /// by its /64; an IPv4-mapped IPv6 address counts as its IPv4 address.
    ///
    /// ```
    /// use convosphere_domain::ports::RateSubject;
    /// let a = RateSubject::client("2001:db8:1:2::1".parse().unwrap());
    /// let b = RateSubject::client("2001:db8:1:2:ffff::9".parse().unwrap());
    /// let c = RateSubject::client("2001:db8:1:3::1".parse().unwrap());
    /// assert_eq!(a, b);
    /// assert_ne!(a, c);
    /// assert_eq!(
    ///     RateSubject::client("::ffff:192.0.2.7".parse().unwrap()),
    ///     RateSubject::client("192.0.2.7".parse().unwrap()),
    /// );
    /// ```
    pub fn client(ip: std::net::IpAddr) -> Self {
        RateSubject::Ip(network(ip))
    }
}

/// A client's network: an IPv4 address, or the /64 of an IPv6 one (an
/// IPv4-mapped IPv6 address is its IPv4 address).
pub fn network(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl std::fmt::Display for RateSubject {
    /// `acct:<user id>` or `ip:<address>`: the key a shared limiter stores.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateSubject::Account(user) => write!(f, "acct:{user}"),
            RateSubject::Ip(ip) => write!(f, "ip:{ip}"),
            RateSubject::Mailbox(user) => write!(f, "mail:{user}"),
            RateSubject::FailedChecks(ip) => write!(f, "fail:{ip}"),
        }
    }
}

/// Counts requests per [`RateSubject`] against a budget per minute.
/// Implementations use GCRA, so that a budget of N per minute lets a burst of
/// N through and then one request each 60/N seconds.
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `subject` against `per_minute`.
    fn check(
        &self,
        subject: RateSubject,
        per_minute: u32,
    ) -> impl Future<Output = Result<RateLimitDecision, InfraError>> + Send;
}

/// The key under which a checked credential is cached: the SHA-256 of the
/// whole credential, so that the cache never holds a bearer secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialKey(pub [u8; 32]);

impl CredentialKey {
    /// The key of a credential as presented.
    pub fn of(credential: &str) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(credential.as_bytes()).into())
    }
}

/// Remembers the callers of credentials checked lately, shared by every
/// request of an instance, and forgets them on an [`Invalidation`].
///
/// The cache itself holds no rule: [`Auth::authenticate`](crate::Auth::authenticate)
/// decides what to remember and for how long, and remembers a caller only if
/// the [`generation`](Self::generation) did not move while it was checked.
/// Implementations must move the generation *before* they forget, so that
/// a check racing an invalidation sees one or the other.
#[cfg(feature = "use-cases")]
pub trait CredentialCache: Send + Sync {
    /// The caller remembered for `key`, if it is still current at `now`.
    fn get(&self, key: &CredentialKey, now: DateTime<Utc>) -> Option<crate::auth::Caller>;

    /// Counts invalidations: it moves on with every [`forget`](Self::forget).
    fn generation(&self) -> u64;

    /// Remembers `caller` for `key` until `until` at the latest.
    fn insert(&self, key: CredentialKey, caller: crate::auth::Caller, until: DateTime<Utc>);

    /// Forgets what `key` was remembered as.
    fn remove(&self, key: &CredentialKey);

    /// Forgets every caller that `invalidation` touches.
    fn forget(&self, invalidation: &Invalidation);

    /// Claims the recording of a session's use: `false` while another
    /// claim on the same session is held (its write is in flight).
    fn claim_touch(&self, session: SessionId) -> bool;

    /// Ends a claim of [`claim_touch`](Self::claim_touch).
    fn release_touch(&self, session: SessionId);

    /// Refuses the checks of `client`'s network that miss the cache until
    /// `until` (its failed checks spent their budget). Remembering nothing,
    /// as the default does, refuses nothing.
    fn refuse_client(&self, client: std::net::IpAddr, until: DateTime<Utc>) {
        let _ = (client, until);
    }

    /// Until when checks of `client`'s network are refused, if they are at `now`.
    fn refused_until(&self, client: std::net::IpAddr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let _ = (client, now);
        None
    }
}

/// Stored API keys.
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key.
    fn create_api_key(&self, key: &crate::api_key::ApiKey) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The key with this public id, whoever owns it, whatever its status.
    fn api_key_by_public_id(
        &self,
        public_id: &str,
    ) -> impl Future<Output = Result<Option<crate::api_key::ApiKey>, InfraError>> + Send;

    /// One key of `user`.
    fn api_key(
        &self,
        user: UserId,
        id: crate::api_key::ApiKeyId,
    ) -> impl Future<Output = Result<Option<crate::api_key::ApiKey>, InfraError>> + Send;

    /// Every key of `user`, newest first.
    fn api_keys(&self, user: UserId) -> impl Future<Output = Result<Vec<crate::api_key::ApiKey>, InfraError>> + Send;

    /// Revokes a key of `user`; `false` if it is not theirs or already revoked.
    fn revoke_api_key(
        &self,
        user: UserId,
        id: crate::api_key::ApiKeyId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Revokes `old` and stores `replacement`, in one transaction; `false`
    /// (and nothing stored) if `old` is not theirs or already revoked. Of
    /// parallel rotations of one key, exactly one succeeds.
    fn rotate_api_key(
        &self,
        user: UserId,
        old: crate::api_key::ApiKeyId,
        replacement: &crate::api_key::ApiKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Records when keys were last used, and from where (a batch, written
    /// every few seconds).
    fn record_api_key_use(&self, uses: &[crate::usage::KeyUse]) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Where a key was last used from: its client IP and `User-Agent`.
    fn api_key_last_client(
        &self,
        key: crate::api_key::ApiKeyId,
    ) -> impl Future<Output = Result<crate::ClientContext, InfraError>> + Send;
}

/// Stored usage counts of keys and accounts, and the networks keys were
/// used from. Every write is additive or idempotent, so that several
/// instances writing at once add up exactly.
pub trait UsageRepository: Send + Sync {
    /// Adds counts to their hourly and daily buckets, in one transaction
    /// (an additive upsert; the greater peak is kept).
    fn add_usage(&self, deltas: &[crate::usage::UsageDelta]) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The stored buckets of `subject` within `range`, at its granularity;
    /// an account's summed over its keys and sessions.
    fn usage(
        &self,
        subject: crate::usage::UsageSubject,
        range: &crate::usage::UsageRange,
    ) -> impl Future<Output = Result<Vec<crate::usage::UsageBucket>, InfraError>> + Send;

    /// Notes that `key` was used from `network` at `at`, and answers when it
    /// was last used from there before (`None`: never). A key keeps its
    /// most recent networks only (a few hundred).
    fn note_key_network(
        &self,
        key: crate::api_key::ApiKeyId,
        network: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, InfraError>> + Send;

    /// The networks `key` was used from, most recent first.
    fn key_networks(
        &self,
        key: crate::api_key::ApiKeyId,
    ) -> impl Future<Output = Result<Vec<crate::usage::KeyNetworkUse>, InfraError>> + Send;

    /// Claims the e-mail about `kind` of unusual use of `key` on the day of
    /// `at` (UTC): `true` for the one caller of all instances that does.
    fn claim_usage_alert(
        &self,
        key: crate::api_key::ApiKeyId,
        kind: EventKind,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Deletes counts, networks and alert claims older than `before`; how many rows went.
    fn prune_usage(&self, before: DateTime<Utc>) -> impl Future<Output = Result<u64, InfraError>> + Send;
}

/// Something a cache of credentials must forget: every instance learns of
/// it within a second through an [`InvalidationFeed`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// A session ended (logout, revocation, eviction, reuse, password change or reset, suspension).
    Session(SessionId),
    /// An account changed plan, or was suspended or reinstated.
    User(UserId),
    /// An API key was revoked or rotated away (by its public id).
    ApiKey(String),
}

/// A durable, ordered log of [`Invalidation`]s, written by storage in the
/// same transaction as the change itself, so that every instance (and a
/// change made by the command line) reaches every cache.
pub trait InvalidationFeed: Send + Sync {
    /// The invalidations after `cursor` (0 at first), oldest first, with
    /// the cursor to pass next time.
    fn invalidations_since(
        &self,
        cursor: i64,
    ) -> impl Future<Output = Result<(i64, Vec<Invalidation>), InfraError>> + Send;

    /// The newest cursor (where a fresh cache starts).
    fn latest_invalidation(&self) -> impl Future<Output = Result<i64, InfraError>> + Send;
}

/// A user's TOTP enrolment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The secret, sealed by the [`SecretBox`].
    pub sealed_secret: String,
    /// Whether a code confirmed it (2FA is on).
    pub confirmed: bool,
    /// The last step whose code was accepted; a code is accepted once.
    pub last_step: Option<i64>,
}

/// Stores TOTP secrets and recovery codes.
pub trait MfaRepository: Send + Sync {
    /// Keeps a new, unconfirmed secret, replacing an unconfirmed one.
    /// `false` (nothing written) when 2FA is already on.
    fn begin_totp(
        &self,
        user: UserId,
        sealed_secret: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// The user's enrolment, confirmed or not.
    fn totp(&self, user: UserId) -> impl Future<Output = Result<Option<TotpEnrolment>, InfraError>> + Send;

    /// Turns 2FA on: confirms the pending secret, records `step` as used
    /// and stores the recovery codes' hashes, atomically. `false` when no
    /// unconfirmed secret was pending.
    fn confirm_totp(
        &self,
        user: UserId,
        step: i64,
        recovery_codes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Records a confirmed secret's `step` as used if no later or equal step
    /// was: `true` for exactly one of parallel uses of one code.
    fn use_totp_step(&self, user: UserId, step: i64) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Marks an unused recovery code used: `true` for exactly one use.
    fn use_recovery_code(
        &self,
        user: UserId,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// How many recovery codes are left unused.
    fn recovery_codes_left(&self, user: UserId) -> impl Future<Output = Result<u32, InfraError>> + Send;

    /// Turns 2FA off: forgets the secret and the recovery codes.
    fn disable_totp(&self, user: UserId) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// Stores the audit trail.
pub trait EventRepository: Send + Sync {
    /// Appends one event.
    fn record_event(&self, event: &crate::SecurityEvent) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Up to `limit` events of a user older than `before` (all if `None`), newest first.
    fn events(
        &self,
        user: UserId,
        before: Option<crate::EventId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<crate::SecurityEvent>, InfraError>> + Send;
}

/// The identity providers (Google through OpenID Connect, GitHub,
/// Facebook) behind one port: one adapter serves every configured provider.
pub trait OAuthProvider: Send + Sync {
    /// Whether `provider` is configured (has a client id).
    fn is_enabled(&self, provider: crate::oauth::Provider) -> bool;

    /// The provider's authorization URL for this request, with `state`, the
    /// PKCE `S256` challenge and, for OpenID Connect, the `nonce`.
    fn authorization_url(
        &self,
        request: &crate::oauth::AuthorizationRequest<'_>,
    ) -> impl Future<Output = Result<String, crate::oauth::ProviderError>> + Send;

    /// Redeems an authorization code (with the PKCE verifier) and says who
    /// logged in. For OpenID Connect the ID token is validated (signature,
    /// `iss`, `aud`, `exp`, `nonce`) before anything in it is believed.
    fn identify(
        &self,
        grant: &crate::oauth::CodeGrant<'_>,
    ) -> impl Future<Output = Result<crate::oauth::ProviderIdentity, crate::oauth::ProviderError>> + Send;
}

/// Stores what OAuth logins need: authorizations in flight, the links of
/// provider identities to accounts, and the one-time codes that the
/// callback hands the client.
pub trait OAuthRepository: Send + Sync {
    /// Stores an authorization in flight.
    fn save_pending_login(
        &self,
        pending: &crate::oauth::PendingLogin,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Removes and returns the authorization with this state, whatever its
    /// provider or expiry (the caller checks both). Of parallel calls with
    /// one state, exactly one gets it.
    fn take_pending_login(
        &self,
        state: &TokenHash,
    ) -> impl Future<Output = Result<Option<crate::oauth::PendingLogin>, InfraError>> + Send;

    /// The account linked to this provider identity.
    fn identity_owner(
        &self,
        provider: crate::oauth::Provider,
        subject: &str,
    ) -> impl Future<Output = Result<Option<UserId>, InfraError>> + Send;

    /// Links an identity to an existing account. The provider verified the
    /// account's address, so, in the same transaction, an account whose
    /// address was not yet verified becomes verified and loses its password:
    /// nobody proved that the one who chose it owns the address.
    fn link_identity(
        &self,
        identity: &crate::oauth::LinkedIdentity,
    ) -> impl Future<Output = Result<crate::oauth::LinkOutcome, InfraError>> + Send;

    /// The identities linked to `user`, oldest first.
    fn identities(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<crate::oauth::IdentityRecord>, InfraError>> + Send;

    /// Notes that a login used this identity at `at`.
    fn note_identity_use(
        &self,
        provider: crate::oauth::Provider,
        subject: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Unlinks the identity of `provider` from `user`, in one transaction
    /// under the account's lock, so that parallel unlinks cannot leave an
    /// account without a way in: refused when the account has no password
    /// and this is its only identity.
    fn unlink_identity(
        &self,
        user: UserId,
        provider: crate::oauth::Provider,
    ) -> impl Future<Output = Result<crate::oauth::UnlinkOutcome, InfraError>> + Send;

    /// Creates an account and links the identity to it, in one transaction.
    /// [`CreateUserError::EmailTaken`] (and nothing stored) when the address,
    /// or the identity, was taken meanwhile by a parallel login.
    fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &crate::oauth::LinkedIdentity,
    ) -> impl Future<Output = Result<User, CreateUserError>> + Send;

    /// Stores a one-time login code for `user` (by hash).
    fn issue_login_code(
        &self,
        code: &TokenHash,
        user: UserId,
        provider: crate::oauth::Provider,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The account and provider of a login code that is unused and
    /// unexpired, without using it (a login that waits for its second factor).
    fn login_code_owner(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(UserId, crate::oauth::Provider)>, InfraError>> + Send;

    /// Uses a login code: its account and provider if it was unused and
    /// unexpired. Of parallel calls with one code, exactly one gets them.
    fn consume_login_code(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(UserId, crate::oauth::Provider)>, InfraError>> + Send;
}

/// A [`CredentialCache`] that remembers nothing: every request is checked
/// in full. For tools and services that make few checks.
#[cfg(feature = "use-cases")]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentialCache;

#[cfg(feature = "use-cases")]
impl CredentialCache for NoCredentialCache {
    fn get(&self, _: &CredentialKey, _: DateTime<Utc>) -> Option<crate::auth::Caller> {
        None
    }

    fn generation(&self) -> u64 {
        0
    }

    fn insert(&self, _: CredentialKey, _: crate::auth::Caller, _: DateTime<Utc>) {}

    fn remove(&self, _: &CredentialKey) {}

    fn forget(&self, _: &Invalidation) {}

    fn claim_touch(&self, _: SessionId) -> bool {
        true
    }

    fn release_touch(&self, _: SessionId) {}
}
