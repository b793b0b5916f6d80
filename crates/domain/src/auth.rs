//! The e-mail/password use cases: signup, verification, login, sessions,
//! password reset and change, profile, and the operator's commands.

use crate::event::{ClientContext, EventId, EventKind, EventPage, SecurityEvent};
use crate::mfa::{RecoveryCode, TotpSecret};
use crate::ports::{
    AccessClaims, Clock, CreateUserError, CredentialCache, Invalidation, Mail, Mailer, NewSession, PasswordHasher,
    RefreshOutcome, RefusedLogin, Rng, SecretBox, Store, TokenSigner,
};
use crate::profile::{parse_name, parse_optional_text, parse_phone, ProfileUpdate};
use crate::{
    AuthMethod, Email, EndReason, FieldError, InfraError, NewUser, OpaqueToken, Password, PasswordError, Plan,
    PlanLimits, Session, SessionId, TokenKind, User, UserId,
};
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The policies of the use cases (from the service's configuration).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Base of links in e-mails, without a trailing slash.
    pub public_url: String,
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Absolute lifetime of a session's refresh tokens, counted from login.
    pub refresh_token_ttl: Duration,
    /// A session unused this long is over.
    pub session_idle_timeout: Duration,
    /// Concurrent sessions per user.
    pub max_sessions: u32,
    /// Lifetime of an e-mail verification link.
    pub email_verify_ttl: Duration,
    /// Lifetime of a password reset link.
    pub password_reset_ttl: Duration,
    /// Lifetime of a change-of-address link (`AUTH_EMAIL_CHANGE_TTL`).
    pub email_change_ttl: Duration,
    /// Consecutive failed password checks that lock an account.
    pub lockout_threshold: u32,
    /// How long a lockout lasts.
    pub lockout_duration: Duration,
    /// The issuer named in authenticator apps (`otpauth://` URIs).
    pub mfa_issuer: String,
    /// Requests per minute of each plan.
    pub plan_limits: PlanLimits,
    /// How long after a sign-in or re-authentication a session may do
    /// sensitive actions (`AUTH_REAUTH_WINDOW`).
    pub reauth_window: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            access_token_ttl: Duration::minutes(15),
            refresh_token_ttl: Duration::days(7),
            session_idle_timeout: Duration::hours(24),
            max_sessions: 5,
            email_verify_ttl: Duration::hours(24),
            password_reset_ttl: Duration::hours(1),
            email_change_ttl: crate::account::EMAIL_CHANGE_TTL,
            lockout_threshold: 10,
            lockout_duration: Duration::minutes(15),
            mfa_issuer: "Convosphere AI".into(),
            plan_limits: PlanLimits::default(),
            reauth_window: Duration::minutes(10),
        }
    }
}

/// How many links and notices one mailbox is sent a minute at most (a
/// burst of this many, then one each 60/N seconds).
pub const MAILS_PER_MINUTE: u32 = 2;

/// How often at most a session's `last_active_at` is written.
pub(crate) const TOUCH_INTERVAL: Duration = Duration::seconds(60);

/// A signup as typed. Required fields may be empty: they are reported, not assumed.
#[derive(Debug, Clone, Default)]
pub struct SignupRequest {
    /// Display name (required).
    pub name: String,
    /// E-mail address (required).
    pub email: String,
    /// Password (required). Not printed by `Debug`.
    pub password: SecretString,
    /// Optional company.
    pub company: Option<String>,
    /// Optional country.
    pub country: Option<String>,
    /// Optional phone.
    pub phone: Option<String>,
    /// Where the request came from (for the audit trail).
    pub client: ClientContext,
}

/// A login attempt.
#[derive(Debug, Clone, Default)]
pub struct LoginRequest {
    /// E-mail address as typed.
    pub email: String,
    /// Password as typed.
    pub password: SecretString,
    /// The current TOTP code, when 2FA is on.
    pub totp_code: Option<SecretString>,
    /// A recovery code instead of the TOTP code.
    pub recovery_code: Option<SecretString>,
    /// Where the request came from (the session list, the audit trail).
    pub client: ClientContext,
}

/// The second factor presented with a login, for an account with 2FA on.
#[derive(Debug, Clone, Default)]
pub struct SecondFactor {
    /// The current TOTP code.
    pub totp_code: Option<SecretString>,
    /// A recovery code instead of the TOTP code.
    pub recovery_code: Option<SecretString>,
}

/// What checking the password of a signed-in user found.
pub(crate) enum PasswordCheck {
    /// It is theirs.
    Right,
    /// It is not; counted toward the lockout and recorded.
    Wrong,
    /// The account is locked out: nothing was checked.
    Locked,
}

/// What checking a second factor found.
pub(crate) enum FactorCheck {
    /// None was presented.
    Missing,
    /// Wrong or already used: counted toward the lockout and recorded.
    Wrong,
    /// Accepted (and used up).
    Passed,
}

/// Tokens handed out at login or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    /// The JWT access token.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The new refresh token (shown once).
    pub refresh_token: OpaqueToken,
    /// Seconds until the session's refresh lifetime ends.
    pub refresh_expires_in: i64,
    /// The session.
    pub session_id: SessionId,
    /// The account.
    pub user: User,
}

/// Who is calling, once an access token is checked.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account, as stored now.
    pub user: User,
    /// The session of the access token.
    pub session_id: SessionId,
    /// The session's last sign-in or re-authentication.
    pub auth_time: DateTime<Utc>,
    /// Until when this outcome holds as long as neither the session nor
    /// the account changes: the earliest of the token's expiry, the
    /// session's end (absolute or idle) and the next time its use is
    /// recorded. [`Auth::authenticate`] remembers it no longer than this.
    pub holds_until: DateTime<Utc>,
}

/// Outcomes of [`Auth::signup`].
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// Some fields are invalid (the password's problem included, if any).
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Only the password is refused.
    #[error("{0}")]
    WeakPassword(PasswordError),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::verify_email`] and link-based calls.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Unknown, used or expired link.
    #[error("the link is invalid or has expired")]
    LinkInvalid,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::login`].
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong e-mail or password (the same for both).
    #[error("wrong e-mail or password")]
    InvalidCredentials,
    /// Right password, e-mail not verified yet.
    #[error("the e-mail address is not verified")]
    EmailNotVerified,
    /// Suspended, or right password during a failed-login lockout.
    #[error("the account is locked")]
    Locked,
    /// Right password, 2FA on, and no code given.
    #[error("a two-factor code is required")]
    MfaRequired,
    /// Right password, wrong (or already used) TOTP or recovery code.
    #[error("the two-factor code is wrong")]
    InvalidMfaCode,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::refresh`].
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown or reused refresh token (a reuse ends the session).
    #[error("the refresh token is invalid")]
    InvalidToken,
    /// The session ended (idle, past its lifetime, evicted, logged out).
    #[error("the session has ended")]
    SessionExpired,
    /// The account is suspended.
    #[error("the account is locked")]
    Locked,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::reset_password`].
#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    /// Unknown, used or expired link.
    #[error("the link is invalid or has expired")]
    LinkInvalid,
    /// The new password is refused; the link still works.
    #[error("{0}")]
    WeakPassword(PasswordError),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::change_password`].
#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    /// The current password is wrong; counted toward the lockout.
    #[error("the current password is wrong")]
    InvalidCredentials,
    /// Locked out after wrong passwords: no password is checked until it ends.
    #[error("the account is locked")]
    Locked,
    /// The new password is refused.
    #[error("{0}")]
    WeakPassword(PasswordError),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::update_profile`].
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Invalid fields.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The account is gone.
    #[error("not found")]
    NotFound,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of calls that name a resource of the user.
#[derive(Debug, thiserror::Error)]
pub enum NotFoundError {
    /// No such resource of this user.
    #[error("not found")]
    NotFound,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of the operator's commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address is not valid or belongs to no account.
    #[error("no account with the e-mail address {0:?}")]
    UnknownEmail(String),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// The ports every use case shares, as trait objects: the time, randomness,
/// the encryption of secrets at rest and the cache of checked credentials.
/// Tests drive the clock and the randomness.
#[derive(Clone)]
pub struct Runtime {
    /// The current time.
    pub clock: Arc<dyn Clock>,
    /// Cryptographically secure randomness.
    pub rng: Arc<dyn Rng>,
    /// Encrypts TOTP secrets at rest.
    pub secrets: Arc<dyn SecretBox>,
    /// Remembers checked credentials ([`NoCredentialCache`](crate::ports::NoCredentialCache) remembers none).
    pub credentials: Arc<dyn CredentialCache>,
}

/// The auth use cases, generic over their ports.
///
/// `S` stores users, sessions, one-time tokens, 2FA and the audit trail;
/// `H` hashes passwords; `T` signs access tokens; `M` sends mail; `L`
/// counts requests against the plans' budgets.
pub struct Auth<S, H, T, M, L> {
    store: S,
    hasher: H,
    signer: T,
    mailer: M,
    limiter: L,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
    secrets: Arc<dyn SecretBox>,
    credentials: Arc<dyn CredentialCache>,
    config: AuthConfig,
    /// The millisecond of the last event id: ids of one instance's events
    /// increase even within one millisecond, so their order is their cursor.
    last_event_ms: AtomicI64,
}

/// A session made ready to store: [`Auth::opening`], then stored, then
/// [`Auth::opened`].
struct Opening {
    session: Session,
    refresh: OpaqueToken,
    refresh_hash: crate::TokenHash,
    signed_in: SecurityEvent,
    max_active: u32,
    idle_cutoff: DateTime<Utc>,
}

impl Opening {
    fn new_session(&self) -> NewSession<'_> {
        NewSession {
            session: &self.session,
            refresh: &self.refresh_hash,
            max_active: self.max_active,
            idle_cutoff: self.idle_cutoff,
            signed_in: &self.signed_in,
        }
    }
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// Wires the use cases to their adapters.
    pub fn new(store: S, hasher: H, signer: T, mailer: M, limiter: L, runtime: Runtime, config: AuthConfig) -> Self {
        Self {
            store,
            hasher,
            signer,
            mailer,
            limiter,
            clock: runtime.clock,
            rng: runtime.rng,
            secrets: runtime.secrets,
            credentials: runtime.credentials,
            config,
            last_event_ms: AtomicI64::new(0),
        }
    }

    /// The policies in force.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Forgets what a change made stale in the cache of credentials, on
    /// this instance at once (storage writes the same invalidation to the
    /// feed, for the other instances).
    fn forget(&self, invalidation: Invalidation) {
        self.credentials.forget(&invalidation);
    }

    /// Forgets the sessions a change ended.
    fn forget_sessions(&self, ended: &[SessionId]) {
        for id in ended {
            self.forget(Invalidation::Session(*id));
        }
    }

    /// Appends an event to the user's audit trail.
    async fn record(
        &self,
        user: UserId,
        kind: EventKind,
        client: &ClientContext,
        details: &[(&str, &str)],
    ) -> Result<(), InfraError> {
        let event = self.event(user, kind, client, details);
        self.store.record_event(&event).await
    }

    /// An event of the user's audit trail, now, with an id later than the
    /// previous event's.
    fn event(&self, user: UserId, kind: EventKind, client: &ClientContext, details: &[(&str, &str)]) -> SecurityEvent {
        let now = self.clock.now();
        let millis = now.timestamp_millis();
        let previous = self
            .last_event_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(last.max(millis - 1) + 1)
            })
            .unwrap_or(millis - 1);
        let id_time = DateTime::from_timestamp_millis(previous.max(millis - 1) + 1).unwrap_or(now);
        SecurityEvent {
            id: EventId::generate(id_time, &*self.rng),
            user_id: user,
            kind,
            at: now,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            details: details
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The user's security events older than `before`, newest first, at
    /// most `limit` (1–100) of them, with the cursor of the next page.
    pub async fn events(&self, user: UserId, before: Option<EventId>, limit: u32) -> Result<EventPage, InfraError> {
        let limit = limit.clamp(1, 100);
        let mut events = self.store.events(user, before, limit + 1).await?;
        let next = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    fn idle_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.config.session_idle_timeout
    }

    fn link(&self, path: &str, token: &OpaqueToken) -> String {
        format!("{}{path}?token={}", self.config.public_url, token.expose())
    }

    /// How long a link of this kind stays valid.
    fn link_ttl(&self, kind: TokenKind) -> Duration {
        match kind {
            TokenKind::EmailVerification => self.config.email_verify_ttl,
            TokenKind::PasswordReset => self.config.password_reset_ttl,
        }
    }

    /// The e-mail that carries `token` to `user` as a link of this kind.
    fn link_mail(&self, user: &User, kind: TokenKind, token: &OpaqueToken) -> Mail {
        let (to, name) = (user.email.clone(), user.name.clone());
        match kind {
            TokenKind::EmailVerification => Mail::VerifyEmail {
                to,
                name,
                link: self.link("/verify-email", token),
            },
            TokenKind::PasswordReset => Mail::PasswordReset {
                to,
                name,
                link: self.link("/reset-password", token),
            },
        }
    }

    /// Whether another e-mail may go to `user`'s mailbox now. Links and
    /// notices go to one mailbox at most [`MAILS_PER_MINUTE`] a minute
    /// however many clients ask, so that nobody floods an inbox from many
    /// networks; a mail held back is not sent, and the caller hears the
    /// same answer either way.
    async fn mailbox_has_room(&self, user: UserId) -> Result<bool, InfraError>
    where
        L: crate::ports::RateLimiter,
    {
        let decision = self
            .limiter
            .check(crate::ports::RateSubject::Mailbox(user), MAILS_PER_MINUTE);
        Ok(decision.await?.allowed)
    }

    async fn send_link(&self, user: &User, kind: TokenKind) -> Result<(), InfraError>
    where
        L: crate::ports::RateLimiter,
    {
        if !self.mailbox_has_room(user.id).await? {
            // The newest link sent stays the one that works.
            return Ok(());
        }
        let now = self.clock.now();
        let token = OpaqueToken::generate(&*self.rng);
        self.store
            .issue_token(user.id, kind, &token.hash(), now + self.link_ttl(kind))
            .await?;
        self.mailer.send(self.link_mail(user, kind, &token)).await
    }

    /// Signs up. Answers the same whether or not the address is taken: a
    /// taken address is sent a "someone tried to sign up" e-mail instead of
    /// a verification link. The password is hashed in both cases, so both
    /// take the same time.
    pub async fn signup(&self, request: SignupRequest) -> Result<(), SignupError>
    where
        L: crate::ports::RateLimiter,
    {
        let mut errors = Vec::new();
        let name = parse_name(&request.name, &mut errors);
        let email = Email::parse(&request.email)
            .map_err(|e| errors.push(FieldError::new("email", e.code(), e.to_string())))
            .ok();
        let company = parse_optional_text("company", request.company.as_deref(), &mut errors);
        let country = parse_optional_text("country", request.country.as_deref(), &mut errors);
        let phone = parse_phone(request.phone.as_deref(), &mut errors);
        let email_text = email.as_ref().map(|e| e.as_str()).unwrap_or(request.email.trim());
        let password = Password::new_for(request.password.expose_secret(), &[email_text, &name]);
        match (&password, errors.is_empty()) {
            (Err(e), true) => return Err(SignupError::WeakPassword(*e)),
            (Err(e), false) => errors.push(FieldError::new("password", e.code(), e.to_string())),
            (Ok(_), _) => {}
        }
        let (Some(email), Ok(password)) = (email, password) else {
            return Err(SignupError::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(SignupError::Invalid(errors));
        }

        let hash = self.hasher.hash(&password).await?;
        let now = self.clock.now();
        let new_user = NewUser {
            id: UserId::generate(now, &*self.rng),
            name,
            email,
            email_verified: false,
            password_hash: Some(hash),
            company,
            country,
            phone,
            plan: Plan::Free,
            created_at: now,
        };
        // The account, its verification link and its `signup` event are
        // stored together or not at all; the mail goes once they are.
        let token = OpaqueToken::generate(&*self.rng);
        let event = self.event(new_user.id, EventKind::Signup, &request.client, &[]);
        let expires_at = now + self.link_ttl(TokenKind::EmailVerification);
        match self
            .store
            .create_user_with_link(&new_user, &token.hash(), expires_at, &event)
            .await
        {
            Ok(user) => Ok(self
                .mailer
                .send(self.link_mail(&user, TokenKind::EmailVerification, &token))
                .await?),
            Err(CreateUserError::EmailTaken) => {
                let Some(existing) = self.store.user_by_email(&new_user.email).await? else {
                    return Ok(());
                };
                if !self.mailbox_has_room(existing.id).await? {
                    return Ok(());
                }
                let name = existing.name;
                let base = &self.config.public_url;
                self.mailer
                    .send(Mail::SignupAttempt {
                        to: new_user.email,
                        name,
                        login_link: format!("{base}/login"),
                        forgot_link: format!("{base}/forgot-password"),
                    })
                    .await?;
                Ok(())
            }
            Err(CreateUserError::Infra(e)) => Err(e.into()),
        }
    }

    /// Verifies an e-mail address with the token of a verification link.
    pub async fn verify_email(&self, token: &str, client: &ClientContext) -> Result<User, LinkError> {
        let hash = OpaqueToken::presented(token).hash();
        let now = self.clock.now();
        let user_id = self
            .store
            .consume_token(TokenKind::EmailVerification, &hash, now)
            .await?
            .ok_or(LinkError::LinkInvalid)?;
        let user = self
            .store
            .set_email_verified(user_id)
            .await?
            .ok_or(LinkError::LinkInvalid)?;
        self.forget(Invalidation::User(user_id));
        self.record(user_id, EventKind::EmailVerified, client, &[]).await?;
        Ok(user)
    }

    /// Sends a new verification link to an unverified account; does
    /// nothing (and says nothing) otherwise.
    pub async fn resend_verification(&self, email: &str) -> Result<(), InfraError>
    where
        L: crate::ports::RateLimiter,
    {
        let Ok(email) = Email::parse(email) else { return Ok(()) };
        match self.store.user_by_email(&email).await? {
            Some(user) if !user.email_verified && !user.suspended => {
                self.send_link(&user, TokenKind::EmailVerification).await
            }
            _ => Ok(()),
        }
    }

    /// Logs in with e-mail and password and opens a session.
    ///
    /// An unknown e-mail costs one (dummy) hash like a known one, and
    /// answers like a wrong password. Lockout, verification and suspension
    /// are told only to a caller who gave the right password, except that
    /// a suspended account is `Locked` either way.
    pub async fn login(&self, request: LoginRequest) -> Result<IssuedTokens, LoginError> {
        let password = Password::candidate(request.password.expose_secret());
        let user = match Email::parse(&request.email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.as_ref());
        let password_ok = self.hasher.verify(&password, hash).await?;
        let client = &request.client;
        let Some(user) = user else {
            // Written like a wrong password, so that it costs the same.
            self.refuse_login(None, "unknown_address", false, client).await?;
            return Err(LoginError::InvalidCredentials);
        };
        let now = self.clock.now();
        if user.suspended {
            self.refuse_login(Some(&user), "suspended", false, client).await?;
            return Err(LoginError::Locked);
        }
        if user.is_locked_out(now) {
            self.refuse_login(Some(&user), "locked_out", false, client).await?;
            return Err(if password_ok {
                LoginError::Locked
            } else {
                LoginError::InvalidCredentials
            });
        }
        if !password_ok {
            let counted = user.password_hash.is_some();
            self.refuse_login(Some(&user), "invalid_password", counted, client)
                .await?;
            return Err(LoginError::InvalidCredentials);
        }
        if !user.email_verified {
            self.refuse_login(Some(&user), "email_not_verified", false, client)
                .await?;
            return Err(LoginError::EmailNotVerified);
        }
        if user.mfa_enabled {
            let factor = SecondFactor {
                totp_code: request.totp_code.clone(),
                recovery_code: request.recovery_code.clone(),
            };
            match self.check_second_factor(&user, &factor, client).await? {
                FactorCheck::Missing => return Err(LoginError::MfaRequired),
                FactorCheck::Wrong => return Err(LoginError::InvalidMfaCode),
                FactorCheck::Passed => {}
            }
        }
        // Cleared only now: a right password must not reset the count of
        // wrong second factors.
        if user.failed_logins > 0 {
            self.clear_failures(user.id).await?;
        }
        let (method, amr) = if user.mfa_enabled {
            ("password+totp", vec![AuthMethod::Password, AuthMethod::OneTimeCode])
        } else {
            ("password", vec![AuthMethod::Password])
        };
        Ok(self.open_session(user, amr, method, client).await?)
    }

    /// Ends every session of the principal's user but its own, and forgets them.
    pub(crate) async fn end_other_sessions(&self, principal: &Principal, reason: EndReason) -> Result<(), InfraError> {
        let (user, now) = (principal.user.id, self.clock.now());
        let ended = self
            .store
            .end_user_sessions(user, Some(principal.session_id), now, reason)
            .await?;
        self.forget_sessions(&ended);
        Ok(())
    }

    /// Stores a new password hash (which ends the user's reset links) and
    /// forgets the user remembered with the old one.
    async fn set_password(&self, user: UserId, hash: &crate::PasswordHash) -> Result<(), InfraError> {
        self.store.set_password_hash(user, hash).await?;
        self.forget(Invalidation::User(user));
        Ok(())
    }

    /// Clears failed logins and a lockout, and forgets the user remembered locked.
    pub(crate) async fn clear_failures(&self, user: UserId) -> Result<(), InfraError> {
        self.store.clear_failed_logins(user).await?;
        self.forget(Invalidation::User(user));
        Ok(())
    }

    /// Counts one failed password or code check; records a lockout it causes.
    async fn count_failure(&self, user: &User, client: &ClientContext) -> Result<(), InfraError> {
        let now = self.clock.now();
        let until = now + self.config.lockout_duration;
        let outcome = self
            .store
            .record_failed_login(user.id, now, self.config.lockout_threshold, until)
            .await?;
        if outcome.locked {
            self.locked_out(user.id, until, client).await?;
        }
        Ok(())
    }

    /// Writes a login refused at its password check, the same way whether
    /// or not the address has an account (`user`), so that both cost the
    /// same; `count`: one more failed login. Records a lockout it causes.
    async fn refuse_login(
        &self,
        user: Option<&User>,
        reason: &str,
        count: bool,
        client: &ClientContext,
    ) -> Result<(), InfraError> {
        let now = self.clock.now();
        let until = now + self.config.lockout_duration;
        let event = user.map(|user| self.event(user.id, EventKind::LoginFailed, client, &[("reason", reason)]));
        let refused = match &event {
            Some(event) => RefusedLogin::Account { event, count },
            None => RefusedLogin::UnknownAddress { at: now, client },
        };
        let outcome = self
            .store
            .record_refused_login(refused, self.config.lockout_threshold, until)
            .await?;
        match event {
            Some(event) if outcome.locked => self.locked_out(event.user_id, until, client).await,
            _ => Ok(()),
        }
    }

    /// A lockout just began: every instance forgets the user, and it is in the trail.
    async fn locked_out(&self, user: UserId, until: DateTime<Utc>, client: &ClientContext) -> Result<(), InfraError> {
        self.forget(Invalidation::User(user));
        self.record(user, EventKind::LockedOut, client, &[("until", &until.to_rfc3339())])
            .await
    }

    /// Checks the second factor of a user with 2FA on, whose first factor
    /// (the password, or a provider's login) checked out. A wrong code
    /// counts toward the lockout like a wrong password.
    pub(crate) async fn check_second_factor(
        &self,
        user: &User,
        factor: &SecondFactor,
        client: &ClientContext,
    ) -> Result<FactorCheck, InfraError> {
        let now = self.clock.now();
        let used = match (&factor.totp_code, &factor.recovery_code) {
            (None, None) => return Ok(FactorCheck::Missing),
            (Some(code), _) => self
                .use_totp_code(user.id, code.expose_secret(), now)
                .await?
                .then_some("totp"),
            (None, Some(code)) => self
                .store
                .use_recovery_code(user.id, &RecoveryCode::hash_of(code.expose_secret()), now)
                .await?
                .then_some("recovery_code"),
        };
        match used {
            None => {
                self.count_failure(user, client).await?;
                self.record(
                    user.id,
                    EventKind::LoginFailed,
                    client,
                    &[("reason", "invalid_mfa_code")],
                )
                .await?;
                Ok(FactorCheck::Wrong)
            }
            Some("recovery_code") => {
                let left = self.store.recovery_codes_left(user.id).await?.to_string();
                self.record(user.id, EventKind::RecoveryCodeUsed, client, &[("left", &left)])
                    .await?;
                Ok(FactorCheck::Passed)
            }
            Some(_) => Ok(FactorCheck::Passed),
        }
    }

    /// Checks a TOTP code of a user with 2FA on; `true` once per code.
    async fn use_totp_code(&self, user: UserId, code: &str, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let Some(enrolment) = self.store.totp(user).await?.filter(|e| e.confirmed) else {
            return Ok(false);
        };
        let secret = TotpSecret::from_bytes(
            self.secrets
                .open(&enrolment.sealed_secret, user.to_string().as_bytes())?,
        );
        match secret.matching_step(code, now) {
            Some(step) => self.store.use_totp_step(user, step).await,
            None => Ok(false),
        }
    }

    /// Opens a session for a user who proved who they are by `amr`
    /// (password, OAuth, passkey), ending the oldest beyond the cap; the
    /// `login_succeeded` event (with `method`) is stored with the session.
    pub async fn open_session(
        &self,
        user: User,
        amr: Vec<AuthMethod>,
        method: &str,
        client: &ClientContext,
    ) -> Result<IssuedTokens, InfraError> {
        let opening = self.opening(&user, amr, method, client);
        let evicted = self.store.create_session(&opening.new_session()).await?;
        self.opened(user, opening, &evicted)
    }

    /// A session for `user` to open now, not stored yet.
    fn opening(&self, user: &User, amr: Vec<AuthMethod>, method: &str, client: &ClientContext) -> Opening {
        let signed_in = self.event(user.id, EventKind::LoginSucceeded, client, &[("method", method)]);
        let now = self.clock.now();
        let session = Session {
            id: SessionId::generate(now, &*self.rng),
            user_id: user.id,
            created_at: now,
            last_active_at: now,
            expires_at: now + self.config.refresh_token_ttl,
            ended_at: None,
            end_reason: None,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            auth_time: now,
            amr,
        };
        let refresh = OpaqueToken::generate(&*self.rng);
        Opening {
            refresh_hash: refresh.hash(),
            refresh,
            session,
            signed_in,
            max_active: self.config.max_sessions,
            idle_cutoff: self.idle_cutoff(now),
        }
    }

    /// The tokens of a session just stored, whose storing ended `evicted`.
    fn opened(&self, user: User, opening: Opening, evicted: &[SessionId]) -> Result<IssuedTokens, InfraError> {
        self.forget_sessions(evicted);
        let now = opening.session.created_at;
        self.issue(user, &opening.session, opening.refresh, now)
    }

    fn issue(
        &self,
        user: User,
        session: &Session,
        refresh: OpaqueToken,
        now: DateTime<Utc>,
    ) -> Result<IssuedTokens, InfraError> {
        let expires_at = now + self.config.access_token_ttl;
        let claims = AccessClaims {
            user_id: user.id,
            session_id: session.id,
            plan: user.plan,
            issued_at: now,
            expires_at,
            token_id: crate::ids::new_v7(now, &*self.rng),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
        };
        Ok(IssuedTokens {
            access_token: self.signer.sign(&claims)?,
            expires_in: (expires_at - now).num_seconds(),
            refresh_token: refresh,
            refresh_expires_in: (session.expires_at - now).num_seconds().max(0),
            session_id: session.id,
            user,
        })
    }

    /// Trades a refresh token for a new pair. The old refresh token is dead;
    /// presenting it again ends the whole session.
    pub async fn refresh(&self, refresh_token: &str, client: &ClientContext) -> Result<IssuedTokens, RefreshError> {
        let now = self.clock.now();
        let replacement = OpaqueToken::generate(&*self.rng);
        let presented = OpaqueToken::presented(refresh_token).hash();
        let outcome = self
            .store
            .rotate_refresh_token(&presented, &replacement.hash(), now, self.idle_cutoff(now))
            .await?;
        let session = match outcome {
            RefreshOutcome::Rotated(session) => session,
            RefreshOutcome::Reused(ended) => {
                self.forget(Invalidation::Session(ended.id));
                let id = ended.id.to_string();
                let details = [("reason", "refresh_reuse"), ("session_id", id.as_str())];
                self.record(ended.user_id, EventKind::SessionEnded, client, &details)
                    .await?;
                return Err(RefreshError::InvalidToken);
            }
            RefreshOutcome::Unknown => return Err(RefreshError::InvalidToken),
            RefreshOutcome::Expired => return Err(RefreshError::SessionExpired),
        };
        let user = self
            .store
            .user_by_id(session.user_id)
            .await?
            .ok_or(RefreshError::InvalidToken)?;
        if user.suspended {
            return Err(RefreshError::Locked);
        }
        Ok(self.issue(user, &session, replacement, now)?)
    }

    /// Ends the caller's session.
    pub async fn logout(&self, user: UserId, session: SessionId, client: &ClientContext) -> Result<(), InfraError> {
        let ended = self
            .store
            .end_session(user, session, self.clock.now(), EndReason::Logout)
            .await?;
        self.forget(Invalidation::Session(session));
        if ended {
            let id = session.to_string();
            self.record(
                user,
                EventKind::SessionEnded,
                client,
                &[("reason", "logout"), ("session_id", &id)],
            )
            .await?;
        }
        Ok(())
    }

    /// Sends a password reset link if the address has an account; answers
    /// the same either way.
    pub async fn forgot_password(&self, email: &str) -> Result<(), InfraError>
    where
        L: crate::ports::RateLimiter,
    {
        let Ok(email) = Email::parse(email) else { return Ok(()) };
        match self.store.user_by_email(&email).await? {
            Some(user) => self.send_link(&user, TokenKind::PasswordReset).await,
            None => Ok(()),
        }
    }

    /// Sets a new password with a reset link. The new password is checked
    /// before the link is used, so a refused password leaves the link valid.
    /// Ends every session, lifts a failed-login lockout, and marks the
    /// e-mail verified (the link proved it).
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientContext,
    ) -> Result<(), ResetPasswordError>
    where
        S: crate::ports::ApiKeyRepository,
    {
        let now = self.clock.now();
        let hash = OpaqueToken::presented(token).hash();
        let user_id = self
            .store
            .peek_token(TokenKind::PasswordReset, &hash, now)
            .await?
            .ok_or(ResetPasswordError::LinkInvalid)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(ResetPasswordError::LinkInvalid)?;
        let password = Password::new_for(new_password, &[user.email.as_str(), &user.name])
            .map_err(ResetPasswordError::WeakPassword)?;
        let password_hash = self.hasher.hash(&password).await?;
        if self.store.consume_token(TokenKind::PasswordReset, &hash, now).await? != Some(user_id) {
            return Err(ResetPasswordError::LinkInvalid);
        }
        self.set_password(user_id, &password_hash).await?;
        let ended = self
            .store
            .end_user_sessions(user_id, None, now, EndReason::PasswordReset)
            .await?;
        self.forget_sessions(&ended);
        self.clear_failures(user_id).await?;
        if !user.email_verified {
            self.store.set_email_verified(user_id).await?;
            self.forget(Invalidation::User(user_id));
        }
        self.record(user_id, EventKind::PasswordReset, client, &[]).await?;
        // A reset does not revoke keys (programs use them): the owner is told which still work.
        let keys = self.store.api_keys(user_id).await?;
        let active = keys
            .into_iter()
            .filter(|k| k.status(now) == crate::api_key::ApiKeyStatus::Active);
        self.mailer
            .send(Mail::PasswordWasReset {
                to: user.email.clone(),
                name: user.name.clone(),
                active_keys: active.map(|key| (key.name.clone(), key.prefix())).collect(),
                keys_link: format!("{}/settings/api-keys", self.config.public_url),
            })
            .await?;
        Ok(())
    }

    /// Whether `password` is the user's (an account without one matches nothing).
    async fn password_matches(&self, user: &User, password: &str) -> Result<bool, InfraError> {
        self.hasher
            .verify(&Password::candidate(password), user.password_hash.as_ref())
            .await
    }

    /// Checks the password of a signed-in user before a change to how they
    /// sign in. A wrong one counts toward the lockout as at login (a stolen
    /// access token must not be a way to guess the password), and a locked
    /// account has no password checked until the lockout ends.
    pub(crate) async fn confirm_password(
        &self,
        user: &User,
        password: &str,
        step: &str,
        client: &ClientContext,
    ) -> Result<PasswordCheck, InfraError> {
        if user.is_locked_out(self.clock.now()) {
            return Ok(PasswordCheck::Locked);
        }
        if self.password_matches(user, password).await? {
            return Ok(PasswordCheck::Right);
        }
        if user.password_hash.is_some() {
            self.count_failure(user, client).await?;
        }
        let details = [("reason", "invalid_password"), ("step", step)];
        self.record(user.id, EventKind::LoginFailed, client, &details).await?;
        Ok(PasswordCheck::Wrong)
    }

    /// Changes the password of a logged-in user; every other session ends.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new_password: &str,
        client: &ClientContext,
    ) -> Result<(), ChangePasswordError> {
        let user = &principal.user;
        match self.confirm_password(user, current, "password_change", client).await? {
            PasswordCheck::Right => {}
            PasswordCheck::Wrong => return Err(ChangePasswordError::InvalidCredentials),
            PasswordCheck::Locked => return Err(ChangePasswordError::Locked),
        }
        let password = Password::new_for(new_password, &[user.email.as_str(), &user.name])
            .map_err(ChangePasswordError::WeakPassword)?;
        let hash = self.hasher.hash(&password).await?;
        self.set_password(user.id, &hash).await?;
        self.end_other_sessions(principal, EndReason::PasswordChanged).await?;
        // The current password was right: that counts as a re-authentication.
        self.mark_reauthenticated(principal, vec![AuthMethod::Password], None)
            .await?;
        self.record(user.id, EventKind::PasswordChanged, client, &[]).await?;
        self.mailer
            .send(Mail::PasswordChanged {
                to: user.email.clone(),
                name: user.name.clone(),
                forgot_link: format!("{}/forgot-password", self.config.public_url),
            })
            .await?;
        Ok(())
    }

    /// Whether the caller's session may do a sensitive action now.
    pub fn require_recent_sign_in(&self, principal: &Principal) -> Result<(), RecentSignInRequired> {
        if self.clock.now() < principal.auth_time + self.config.reauth_window {
            Ok(())
        } else {
            Err(RecentSignInRequired)
        }
    }

    /// Proves again who the caller is, with the password (and a code when
    /// 2FA is on), and answers a new token pair for the same session whose
    /// `auth_time` is now. The session's earlier refresh tokens are used up:
    /// presenting one again is a reuse, as after a refresh. A wrong password
    /// or code counts toward the lockout as at login.
    pub async fn reauthenticate(
        &self,
        principal: &Principal,
        password: &str,
        factor: &SecondFactor,
        client: &ClientContext,
    ) -> Result<IssuedTokens, ReauthenticateError> {
        let user = &principal.user;
        match self.confirm_password(user, password, "reauthenticate", client).await? {
            PasswordCheck::Right => {}
            PasswordCheck::Wrong => return Err(LoginError::InvalidCredentials.into()),
            PasswordCheck::Locked => return Err(LoginError::Locked.into()),
        }
        let mut amr = vec![AuthMethod::Password];
        if user.mfa_enabled {
            match self.check_second_factor(user, factor, client).await? {
                FactorCheck::Missing => return Err(LoginError::MfaRequired.into()),
                FactorCheck::Wrong => return Err(LoginError::InvalidMfaCode.into()),
                FactorCheck::Passed => amr.push(AuthMethod::OneTimeCode),
            }
        }
        let refresh = OpaqueToken::generate(&*self.rng);
        let session = self
            .mark_reauthenticated(principal, amr, Some(&refresh))
            .await?
            .ok_or(ReauthenticateError::SessionExpired)?;
        self.record(user.id, EventKind::Reauthenticated, client, &[]).await?;
        Ok(self.issue(user.clone(), &session, refresh, self.clock.now())?)
    }

    /// Records that the caller's session proved itself now by `amr` (a
    /// re-authentication, or a password change or 2FA disable that carried
    /// the password), with `refresh` as its new refresh token if given: the
    /// session as it is now, `None` if it has ended.
    pub(crate) async fn mark_reauthenticated(
        &self,
        principal: &Principal,
        amr: Vec<AuthMethod>,
        refresh: Option<&OpaqueToken>,
    ) -> Result<Option<crate::Session>, InfraError> {
        let (user, id) = (principal.user.id, principal.session_id);
        let hash = refresh.map(OpaqueToken::hash);
        let marked = self
            .store
            .reauthenticate_session(user, id, self.clock.now(), &amr, hash.as_ref())
            .await?;
        self.forget(Invalidation::Session(id));
        if !marked {
            return Ok(None);
        }
        Ok(self.store.session(id).await?.filter(|s| s.ended_at.is_none()))
    }

    /// Changes name, company, country or phone.
    pub async fn update_profile(&self, user: UserId, update: ProfileUpdate) -> Result<User, ProfileError> {
        let updated = self.store.update_profile(user, &update).await?;
        self.forget(Invalidation::User(user));
        updated.ok_or(ProfileError::NotFound)
    }

    /// The user's active sessions, newest first.
    pub async fn sessions(&self, user: UserId) -> Result<Vec<Session>, InfraError> {
        let now = self.clock.now();
        self.store.active_sessions(user, now, self.idle_cutoff(now)).await
    }

    /// Ends one of the user's sessions; `NotFound` for another user's or an ended one.
    pub async fn revoke_session(
        &self,
        user: UserId,
        session: SessionId,
        client: &ClientContext,
    ) -> Result<(), NotFoundError> {
        let now = self.clock.now();
        let active = self
            .store
            .session(session)
            .await?
            .is_some_and(|s| s.user_id == user && s.is_active(now, self.config.session_idle_timeout));
        if !active || !self.store.end_session(user, session, now, EndReason::Revoked).await? {
            return Err(NotFoundError::NotFound);
        }
        self.forget(Invalidation::Session(session));
        let id = session.to_string();
        self.record(
            user,
            EventKind::SessionEnded,
            client,
            &[("reason", "revoked"), ("session_id", &id)],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn user_by_email_or_unknown(&self, email: &str) -> Result<User, AdminError> {
        let unknown = || AdminError::UnknownEmail(email.to_owned());
        let parsed = Email::parse(email).map_err(|_| unknown())?;
        self.store.user_by_email(&parsed).await?.ok_or_else(unknown)
    }

    /// Operator: changes an account's plan.
    pub async fn admin_set_plan(&self, email: &str, plan: Plan) -> Result<User, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        self.store.set_plan(user.id, plan).await?;
        self.forget(Invalidation::User(user.id));
        if plan != user.plan {
            let details = [("from", user.plan.as_str()), ("to", plan.as_str())];
            self.record(user.id, EventKind::PlanChanged, &ClientContext::operator(), &details)
                .await?;
        }
        Ok(User { plan, ..user })
    }

    /// Operator: suspends an account and ends its sessions.
    pub async fn admin_lock(&self, email: &str) -> Result<User, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        self.store.set_suspended(user.id, true).await?;
        self.forget(Invalidation::User(user.id));
        let ended = self
            .store
            .end_user_sessions(user.id, None, self.clock.now(), EndReason::Suspended)
            .await?;
        self.forget_sessions(&ended);
        self.record(user.id, EventKind::Suspended, &ClientContext::operator(), &[])
            .await?;
        Ok(User {
            suspended: true,
            ..user
        })
    }

    /// Operator: lifts a suspension and a failed-login lockout.
    pub async fn admin_unlock(&self, email: &str) -> Result<User, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        self.store.set_suspended(user.id, false).await?;
        self.forget(Invalidation::User(user.id));
        self.clear_failures(user.id).await?;
        self.record(user.id, EventKind::Unlocked, &ClientContext::operator(), &[])
            .await?;
        Ok(User {
            suspended: false,
            failed_logins: 0,
            locked_until: None,
            ..user
        })
    }

    /// Operator: the account's security events, newest first.
    pub async fn admin_events(&self, email: &str, limit: u32) -> Result<Vec<SecurityEvent>, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        Ok(self.store.events(user.id, None, limit).await?)
    }

    /// Operator: marks an e-mail address verified.
    pub async fn admin_verify_email(&self, email: &str) -> Result<User, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        let verified = self.store.set_email_verified(user.id).await?;
        self.forget(Invalidation::User(user.id));
        verified.ok_or_else(|| AdminError::UnknownEmail(email.to_owned()))
    }
}

pub mod account;
pub mod export;
pub mod gateway;
pub use gateway::Caller;
pub mod identities;
pub mod keys;
pub mod mfa;
pub mod oauth;
pub mod passkeys;
pub mod recent;
pub mod usage;
pub use recent::{ReauthenticateError, RecentSignInRequired};

#[cfg(test)]
mod tests;
