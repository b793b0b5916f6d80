//! Use-case tests against in-memory fakes of every port and a fake clock.

use super::*;
use crate::ports::*;
use crate::profile::ProfileUpdate;
use crate::{PasswordHash, TokenHash};
use futures::executor::block_on;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const PASSWORD: &str = "correct horse battery staple";

struct FakeClock(Mutex<DateTime<Utc>>);
impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

struct CountingRng(AtomicU64);
impl Rng for CountingRng {
    fn fill_bytes(&self, dest: &mut [u8]) {
        let n = self.0.fetch_add(1, Ordering::Relaxed).to_le_bytes();
        for (i, byte) in dest.iter_mut().enumerate() {
            *byte = n[i % 8] ^ (i as u8);
        }
    }
}

/// Not a real hash: the tests only need equality and a verify count.
#[derive(Default)]
struct FakeHasher {
    verifications: AtomicU64,
}
impl PasswordHasher for &FakeHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        Ok(PasswordHash::from_phc(format!("fake${}", password.expose())))
    }
    async fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> Result<bool, InfraError> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(hash.is_some_and(|h| h.as_str() == format!("fake${}", password.expose())))
    }
}

struct FakeSigner;
impl TokenSigner for FakeSigner {
    fn sign(&self, c: &AccessClaims) -> Result<String, InfraError> {
        Ok(format!(
            "{}|{}|{}|{}",
            c.user_id,
            c.session_id,
            c.plan,
            c.expires_at.timestamp()
        ))
    }
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenVerifyError> {
        let parts: Vec<&str> = token.split('|').collect();
        let [user, session, plan, exp] = parts[..] else {
            return Err(TokenVerifyError::Invalid);
        };
        let expires_at = DateTime::from_timestamp(exp.parse().map_err(|_| TokenVerifyError::Invalid)?, 0).unwrap();
        if now >= expires_at {
            return Err(TokenVerifyError::Expired);
        }
        Ok(AccessClaims {
            user_id: user.parse().map_err(|_| TokenVerifyError::Invalid)?,
            session_id: session.parse().map_err(|_| TokenVerifyError::Invalid)?,
            plan: plan.parse().map_err(|_| TokenVerifyError::Invalid)?,
            issued_at: now,
            expires_at,
            token_id: uuid::Uuid::nil(),
            auth_time: now,
            amr: vec![],
        })
    }
}

#[derive(Default)]
struct FakeMailer(Mutex<Vec<Mail>>);
impl Mailer for &FakeMailer {
    async fn send(&self, mail: Mail) -> Result<(), InfraError> {
        self.0.lock().unwrap().push(mail);
        Ok(())
    }
}

/// A change to the stored state, made by a test at a chosen moment.
type Change = Box<dyn FnOnce(&mut State) + Send>;

#[derive(Default)]
struct State {
    users: Vec<User>,
    sessions: Vec<Session>,
    /// refresh hash → (session, used)
    refresh: HashMap<TokenHash, (SessionId, bool)>,
    /// token hash → (kind, user, expires, used)
    tokens: HashMap<TokenHash, (TokenKind, UserId, DateTime<Utc>, bool)>,
    keys: Vec<crate::api_key::ApiKey>,
    totp: HashMap<UserId, TotpEnrolment>,
    /// recovery code hash → (user, used)
    recovery: HashMap<TokenHash, (UserId, bool)>,
    events: Vec<crate::SecurityEvent>,
    /// Logins refused for an address without an account.
    unknown_attempts: u32,
    /// Usage counts as added.
    usage: Vec<crate::usage::UsageDelta>,
    /// (key, network) → last seen.
    key_networks: HashMap<(ApiKeyId, String), DateTime<Utc>>,
    /// Alerts claimed: (key, kind, day).
    alerts: std::collections::HashSet<(ApiKeyId, EventKind, chrono::NaiveDate)>,
    /// The client of each key's last use.
    last_clients: HashMap<ApiKeyId, ClientContext>,
    pending_logins: HashMap<TokenHash, crate::oauth::PendingLogin>,
    identities: Vec<crate::oauth::LinkedIdentity>,
    /// (provider, subject) → last login with it.
    identity_uses: HashMap<(crate::oauth::Provider, String), DateTime<Utc>>,
    /// login code hash → (user, provider, expires, used)
    login_codes: HashMap<TokenHash, (UserId, crate::oauth::Provider, DateTime<Utc>, bool)>,
    /// How often a session was read.
    session_reads: u64,
    /// Runs once, right after the next session read.
    after_session_read: Option<Change>,
    /// How many of the next writes of keys' last uses fail.
    failing_key_use_writes: u32,
}

#[derive(Default)]
struct MemoryStore(Mutex<State>);

impl MemoryStore {
    fn user_mut<R>(&self, id: UserId, f: impl FnOnce(&mut User) -> R) -> Option<R> {
        self.0.lock().unwrap().users.iter_mut().find(|u| u.id == id).map(f)
    }
}

fn active(s: &Session, now: DateTime<Utc>, cutoff: DateTime<Utc>) -> bool {
    s.ended_at.is_none() && s.expires_at > now && s.last_active_at > cutoff
}

impl UserRepository for &MemoryStore {
    async fn create_user_with_link(
        &self,
        n: &NewUser,
        token: &TokenHash,
        token_expires_at: DateTime<Utc>,
        event: &crate::SecurityEvent,
    ) -> Result<User, CreateUserError> {
        // One lock for all three: all or nothing, as the port says.
        let user = UserRepository::create_user(self, n).await?;
        let mut state = self.0.lock().unwrap();
        state
            .tokens
            .insert(*token, (TokenKind::EmailVerification, user.id, token_expires_at, false));
        state.events.push(event.clone());
        Ok(user)
    }
    async fn create_user(&self, n: &NewUser) -> Result<User, CreateUserError> {
        let mut state = self.0.lock().unwrap();
        if state.users.iter().any(|u| u.email == n.email) {
            return Err(CreateUserError::EmailTaken);
        }
        let user = User {
            id: n.id,
            name: n.name.clone(),
            email: n.email.clone(),
            email_verified: n.email_verified,
            password_hash: n.password_hash.clone(),
            company: n.company.clone(),
            country: n.country.clone(),
            phone: n.phone.clone(),
            plan: n.plan,
            mfa_enabled: false,
            suspended: false,
            failed_logins: 0,
            locked_until: None,
            created_at: n.created_at,
        };
        state.users.push(user.clone());
        Ok(user)
    }
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        Ok(self.0.lock().unwrap().users.iter().find(|u| u.id == id).cloned())
    }
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, InfraError> {
        Ok(self.0.lock().unwrap().users.iter().find(|u| &u.email == email).cloned())
    }
    async fn update_profile(&self, id: UserId, p: &ProfileUpdate) -> Result<Option<User>, InfraError> {
        Ok(self.user_mut(id, |u| {
            if let Some(name) = &p.name {
                u.name = name.clone();
            }
            if let Some(company) = &p.company {
                u.company = company.clone();
            }
            if let Some(country) = &p.country {
                u.country = country.clone();
            }
            if let Some(phone) = &p.phone {
                u.phone = phone.clone();
            }
            u.clone()
        }))
    }
    async fn set_email_verified(&self, id: UserId) -> Result<Option<User>, InfraError> {
        Ok(self.user_mut(id, |u| {
            u.email_verified = true;
            u.clone()
        }))
    }
    async fn set_password_hash(&self, id: UserId, hash: &PasswordHash) -> Result<(), InfraError> {
        let resets =
            |(kind, user, _, _): &mut (TokenKind, UserId, _, bool)| *kind == TokenKind::PasswordReset && *user == id;
        self.0.lock().unwrap().tokens.retain(|_, token| !resets(token));
        self.user_mut(id, |u| u.password_hash = Some(hash.clone()));
        Ok(())
    }
    async fn record_failed_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        threshold: u32,
        until: DateTime<Utc>,
    ) -> Result<FailedLogin, InfraError> {
        let locked = self.user_mut(id, |u| {
            if u.is_locked_out(now) {
                return false;
            }
            u.failed_logins += 1;
            if u.failed_logins >= threshold {
                u.failed_logins = 0;
                u.locked_until = Some(until);
                return true;
            }
            false
        });
        Ok(FailedLogin {
            locked: locked.unwrap_or(false),
        })
    }
    async fn record_refused_login(
        &self,
        refused: crate::ports::RefusedLogin<'_>,
        threshold: u32,
        until: DateTime<Utc>,
    ) -> Result<FailedLogin, InfraError> {
        match refused {
            crate::ports::RefusedLogin::Account { event, count } => {
                let outcome = if count {
                    self.record_failed_login(event.user_id, event.at, threshold, until)
                        .await?
                } else {
                    FailedLogin { locked: false }
                };
                self.0.lock().unwrap().events.push(event.clone());
                Ok(outcome)
            }
            crate::ports::RefusedLogin::UnknownAddress { .. } => {
                self.0.lock().unwrap().unknown_attempts += 1;
                Ok(FailedLogin { locked: false })
            }
        }
    }
    async fn clear_failed_logins(&self, id: UserId) -> Result<(), InfraError> {
        self.user_mut(id, |u| {
            u.failed_logins = 0;
            u.locked_until = None;
        });
        Ok(())
    }
    async fn set_plan(&self, id: UserId, plan: Plan) -> Result<(), InfraError> {
        self.user_mut(id, |u| u.plan = plan);
        Ok(())
    }
    async fn set_suspended(&self, id: UserId, suspended: bool) -> Result<(), InfraError> {
        self.user_mut(id, |u| u.suspended = suspended);
        Ok(())
    }
}

impl SessionRepository for &MemoryStore {
    async fn create_session(&self, new: &NewSession<'_>) -> Result<Vec<SessionId>, InfraError> {
        let NewSession {
            session,
            refresh,
            max_active: max,
            idle_cutoff: cutoff,
            signed_in,
        } = *new;
        let mut state = self.0.lock().unwrap();
        state.events.push(signed_in.clone());
        state.sessions.push(session.clone());
        state.refresh.insert(*refresh, (session.id, false));
        let now = session.created_at;
        let mut mine: Vec<&mut Session> = state
            .sessions
            .iter_mut()
            .filter(|s| s.user_id == session.user_id && active(s, now, cutoff))
            .collect();
        mine.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
        let mut ended = Vec::new();
        for s in mine.into_iter().skip(max as usize) {
            s.ended_at = Some(now);
            s.end_reason = Some(EndReason::Evicted);
            ended.push(s.id);
        }
        Ok(ended)
    }
    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        replacement: &TokenHash,
        now: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<RefreshOutcome, InfraError> {
        let mut state = self.0.lock().unwrap();
        let Some((sid, used)) = state.refresh.get(presented).copied() else {
            return Ok(RefreshOutcome::Unknown);
        };
        let session = state.sessions.iter_mut().find(|s| s.id == sid).unwrap();
        if !active(session, now, cutoff) {
            return Ok(RefreshOutcome::Expired);
        }
        if used {
            session.ended_at = Some(now);
            session.end_reason = Some(EndReason::RefreshReuse);
            return Ok(RefreshOutcome::Reused(session.clone()));
        }
        session.last_active_at = now;
        let session = session.clone();
        state.refresh.insert(*presented, (sid, true));
        state.refresh.insert(*replacement, (sid, false));
        Ok(RefreshOutcome::Rotated(session))
    }
    async fn reauthenticate_session(
        &self,
        user: UserId,
        id: SessionId,
        auth_time: DateTime<Utc>,
        amr: &[crate::AuthMethod],
        replacement: Option<&TokenHash>,
    ) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        let Some(session) = state
            .sessions
            .iter_mut()
            .find(|s| s.id == id && s.user_id == user && s.ended_at.is_none())
        else {
            return Ok(false);
        };
        session.auth_time = auth_time;
        session.amr = amr.to_vec();
        if let Some(replacement) = replacement {
            for (sid, used) in state.refresh.values_mut() {
                *used |= *sid == id;
            }
            state.refresh.insert(*replacement, (id, false));
        }
        Ok(true)
    }
    async fn session(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        let mut state = self.0.lock().unwrap();
        state.session_reads += 1;
        let read = state.sessions.iter().find(|s| s.id == id).cloned();
        // What commits right after this read (a test's race).
        if let Some(change) = state.after_session_read.take() {
            change(&mut state);
        }
        Ok(read)
    }
    async fn touch_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), InfraError> {
        if let Some(s) = self.0.lock().unwrap().sessions.iter_mut().find(|s| s.id == id) {
            s.last_active_at = now;
        }
        Ok(())
    }
    async fn end_session(
        &self,
        user: UserId,
        id: SessionId,
        now: DateTime<Utc>,
        r: EndReason,
    ) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        let Some(s) = state
            .sessions
            .iter_mut()
            .find(|s| s.id == id && s.user_id == user && s.ended_at.is_none())
        else {
            return Ok(false);
        };
        s.ended_at = Some(now);
        s.end_reason = Some(r);
        Ok(true)
    }
    async fn end_user_sessions(
        &self,
        user: UserId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
        r: EndReason,
    ) -> Result<Vec<SessionId>, InfraError> {
        let mut state = self.0.lock().unwrap();
        let mut ended = Vec::new();
        for s in state.sessions.iter_mut() {
            if s.user_id == user && s.ended_at.is_none() && Some(s.id) != except {
                s.ended_at = Some(now);
                s.end_reason = Some(r);
                ended.push(s.id);
            }
        }
        Ok(ended)
    }
    async fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<Session>, InfraError> {
        let state = self.0.lock().unwrap();
        let mut list: Vec<Session> = state
            .sessions
            .iter()
            .filter(|s| s.user_id == user && active(s, now, cutoff))
            .cloned()
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(list)
    }
}

impl OneTimeTokenRepository for &MemoryStore {
    async fn issue_token(
        &self,
        user: UserId,
        kind: TokenKind,
        hash: &TokenHash,
        exp: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        state.tokens.retain(|_, (k, u, _, _)| !(*k == kind && *u == user));
        state.tokens.insert(*hash, (kind, user, exp, false));
        Ok(())
    }
    async fn peek_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, InfraError> {
        let state = self.0.lock().unwrap();
        Ok(state
            .tokens
            .get(hash)
            .filter(|(k, _, exp, used)| *k == kind && *exp > now && !used)
            .map(|(_, u, _, _)| *u))
    }
    async fn consume_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, InfraError> {
        let mut state = self.0.lock().unwrap();
        match state.tokens.get_mut(hash) {
            Some((k, u, exp, used)) if *k == kind && *exp > now && !*used => {
                *used = true;
                Ok(Some(*u))
            }
            _ => Ok(None),
        }
    }
}

impl MfaRepository for &MemoryStore {
    async fn begin_totp(&self, user: UserId, sealed: &str, _now: DateTime<Utc>) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        if state.totp.get(&user).is_some_and(|e| e.confirmed) {
            return Ok(false);
        }
        let enrolment = TotpEnrolment {
            sealed_secret: sealed.into(),
            confirmed: false,
            last_step: None,
        };
        state.totp.insert(user, enrolment);
        Ok(true)
    }
    async fn totp(&self, user: UserId) -> Result<Option<TotpEnrolment>, InfraError> {
        Ok(self.0.lock().unwrap().totp.get(&user).cloned())
    }
    async fn confirm_totp(
        &self,
        user: UserId,
        step: i64,
        codes: &[TokenHash],
        _now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        match state.totp.get_mut(&user) {
            Some(e) if !e.confirmed => {
                e.confirmed = true;
                e.last_step = Some(step);
            }
            _ => return Ok(false),
        }
        state.recovery.retain(|_, (u, _)| *u != user);
        state.recovery.extend(codes.iter().map(|h| (*h, (user, false))));
        state
            .users
            .iter_mut()
            .filter(|u| u.id == user)
            .for_each(|u| u.mfa_enabled = true);
        Ok(true)
    }
    async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        match state.totp.get_mut(&user) {
            Some(e) if e.confirmed && e.last_step.is_none_or(|last| last < step) => {
                e.last_step = Some(step);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn use_recovery_code(&self, user: UserId, code: &TokenHash, _now: DateTime<Utc>) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        match state.recovery.get_mut(code) {
            Some((u, used)) if *u == user && !*used => {
                *used = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn recovery_codes_left(&self, user: UserId) -> Result<u32, InfraError> {
        let state = self.0.lock().unwrap();
        Ok(state.recovery.values().filter(|(u, used)| *u == user && !used).count() as u32)
    }
    async fn disable_totp(&self, user: UserId) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        state.totp.remove(&user);
        state.recovery.retain(|_, (u, _)| *u != user);
        state
            .users
            .iter_mut()
            .filter(|u| u.id == user)
            .for_each(|u| u.mfa_enabled = false);
        Ok(())
    }
}

impl EventRepository for &MemoryStore {
    async fn record_event(&self, event: &crate::SecurityEvent) -> Result<(), InfraError> {
        self.0.lock().unwrap().events.push(event.clone());
        Ok(())
    }
    async fn events(
        &self,
        user: UserId,
        before: Option<crate::EventId>,
        limit: u32,
    ) -> Result<Vec<crate::SecurityEvent>, InfraError> {
        let state = self.0.lock().unwrap();
        let mut events: Vec<_> = state
            .events
            .iter()
            .filter(|e| e.user_id == user && before.is_none_or(|b| e.id < b))
            .cloned()
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.id));
        events.truncate(limit as usize);
        Ok(events)
    }
}

/// Seals by reversing and hex-encoding after the context: enough to show
/// the domain never hands storage the plain secret, and opens it only for
/// the context it was sealed for.
struct FakeSecretBox;
impl SecretBox for FakeSecretBox {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, InfraError> {
        let hex: String = plaintext.iter().rev().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{}:{hex}", String::from_utf8_lossy(context)))
    }
    fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, InfraError> {
        let hex = sealed
            .strip_prefix(&format!("{}:", String::from_utf8_lossy(context)))
            .ok_or_else(|| InfraError::new("sealed for another context"))?;
        let mut bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        bytes.reverse();
        Ok(bytes)
    }
}

struct World {
    store: MemoryStore,
    hasher: FakeHasher,
    mailer: FakeMailer,
    limiter: FakeLimiter,
    cache: Arc<FakeCache>,
    clock: Arc<FakeClock>,
}

type TestAuth<'a> = Auth<&'a MemoryStore, &'a FakeHasher, FakeSigner, &'a FakeMailer, &'a FakeLimiter>;

impl World {
    fn new() -> Self {
        Self {
            store: MemoryStore::default(),
            hasher: FakeHasher::default(),
            mailer: FakeMailer::default(),
            limiter: FakeLimiter::default(),
            cache: Arc::new(FakeCache::default()),
            clock: Arc::new(FakeClock(Mutex::new(
                DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ))),
        }
    }

    fn auth(&self) -> TestAuth<'_> {
        let config = AuthConfig {
            public_url: "https://auth.example".into(),
            ..AuthConfig::default()
        };
        Auth::new(
            &self.store,
            &self.hasher,
            FakeSigner,
            &self.mailer,
            &self.limiter,
            Runtime {
                clock: self.clock.clone(),
                rng: Arc::new(CountingRng(AtomicU64::new(1))),
                secrets: Arc::new(FakeSecretBox),
                credentials: self.cache.clone(),
            },
            config,
        )
    }

    fn advance(&self, by: Duration) {
        *self.clock.0.lock().unwrap() += by;
    }

    fn mails(&self) -> Vec<Mail> {
        self.mailer.0.lock().unwrap().clone()
    }

    fn last_link_token(&self) -> String {
        match self.mails().last() {
            Some(Mail::VerifyEmail { link, .. } | Mail::PasswordReset { link, .. }) => {
                link.split("token=").nth(1).unwrap().to_owned()
            }
            other => panic!("no link mail: {other:?}"),
        }
    }

    fn signup(&self, auth: &TestAuth<'_>, email: &str) {
        block_on(auth.signup(SignupRequest {
            name: "Ada Lovelace".into(),
            email: email.into(),
            password: PASSWORD.into(),
            company: Some("Analytical Engines".into()),
            ..Default::default()
        }))
        .unwrap();
    }

    /// Signs up and verifies; returns the verified user.
    fn verified_user(&self, auth: &TestAuth<'_>, email: &str) -> User {
        self.signup(auth, email);
        block_on(auth.verify_email(&self.last_link_token(), &client())).unwrap()
    }
}

fn login(auth: &TestAuth<'_>, email: &str, password: &str) -> Result<IssuedTokens, LoginError> {
    block_on(auth.login(LoginRequest {
        email: email.into(),
        password: password.into(),
        client: client(),
        ..Default::default()
    }))
}

fn client() -> ClientContext {
    ClientContext {
        ip: Some("203.0.113.7".into()),
        user_agent: Some("test".into()),
    }
}

#[test]
fn signup_sends_a_verification_link_and_verification_activates_login() {
    let world = World::new();
    let auth = world.auth();
    world.signup(&auth, "  Ada@Example.com ");
    let mails = world.mails();
    assert_eq!(mails.len(), 1);
    let Mail::VerifyEmail { to, link, .. } = &mails[0] else {
        panic!("{mails:?}")
    };
    assert_eq!(to.as_str(), "ada@example.com");
    assert!(link.starts_with("https://auth.example/verify-email?token="));

    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::EmailNotVerified)
    ));
    let user = block_on(auth.verify_email(&world.last_link_token(), &client())).unwrap();
    assert!(user.email_verified);
    assert_eq!(user.company.as_deref(), Some("Analytical Engines"));
    let tokens = login(&auth, "ADA@example.com", PASSWORD).unwrap();
    assert_eq!(tokens.expires_in, 900);
    assert_eq!(tokens.refresh_expires_in, 7 * 24 * 3600);
}

#[test]
fn a_verification_link_works_once_and_a_newer_one_replaces_it() {
    let world = World::new();
    let auth = world.auth();
    world.signup(&auth, "ada@example.com");
    let first = world.last_link_token();
    block_on(auth.resend_verification("ada@example.com")).unwrap();
    let second = world.last_link_token();
    assert!(matches!(
        block_on(auth.verify_email(&first, &client())),
        Err(LinkError::LinkInvalid)
    ));
    block_on(auth.verify_email(&second, &client())).unwrap();
    assert!(matches!(
        block_on(auth.verify_email(&second, &client())),
        Err(LinkError::LinkInvalid)
    ));
}

#[test]
fn verification_links_expire() {
    let world = World::new();
    let auth = world.auth();
    world.signup(&auth, "ada@example.com");
    world.advance(Duration::hours(24));
    assert!(matches!(
        block_on(auth.verify_email(&world.last_link_token(), &client())),
        Err(LinkError::LinkInvalid)
    ));
}

#[test]
fn signup_with_a_taken_address_answers_the_same_and_warns_the_owner() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    world.signup(&auth, "ADA@example.com");
    assert!(matches!(world.mails().last(), Some(Mail::SignupAttempt { .. })));
    assert_eq!(world.store.0.lock().unwrap().users.len(), 1);
    // Both paths hash the password (similar timing).
    assert_eq!(world.hasher.verifications.load(Ordering::Relaxed), 0);
}

#[test]
fn signup_reports_every_invalid_field_and_creates_nothing() {
    let world = World::new();
    let auth = world.auth();
    let err = block_on(auth.signup(SignupRequest {
        name: "".into(),
        email: "nope".into(),
        password: "short".into(),
        phone: Some("call me".into()),
        ..Default::default()
    }))
    .unwrap_err();
    let SignupError::Invalid(errors) = err else {
        panic!("{err:?}")
    };
    let fields: Vec<_> = errors.iter().map(|e| (e.field, e.code)).collect();
    assert_eq!(
        fields,
        [
            ("name", "required"),
            ("email", "invalid_email"),
            ("phone", "invalid_phone"),
            ("password", "too_short")
        ]
    );
    assert!(world.store.0.lock().unwrap().users.is_empty());
    assert!(world.mails().is_empty());
}

#[test]
fn a_weak_password_alone_is_password_too_weak() {
    let world = World::new();
    let auth = world.auth();
    for (password, expected) in [
        ("1234567", PasswordError::TooShort),
        ("password1", PasswordError::Common),
        ("ada@example.com", PasswordError::EqualsEmail),
    ] {
        let err = block_on(auth.signup(SignupRequest {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            password: password.into(),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(
            matches!(err, SignupError::WeakPassword(e) if e == expected),
            "{password}: {err:?}"
        );
    }
}

#[test]
fn unknown_email_and_wrong_password_look_the_same_and_both_hash() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let before = world.hasher.verifications.load(Ordering::Relaxed);
    assert!(matches!(
        login(&auth, "nobody@example.com", PASSWORD),
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        login(&auth, "not an email", PASSWORD),
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        login(&auth, "ada@example.com", "wrong password!"),
        Err(LoginError::InvalidCredentials)
    ));
    assert_eq!(world.hasher.verifications.load(Ordering::Relaxed) - before, 3);
    // Each refusal is written, the unknown addresses too (so that they cost the same).
    let state = world.store.0.lock().unwrap();
    assert_eq!(state.unknown_attempts, 2);
    let failed = state.events.iter().filter(|e| e.kind == EventKind::LoginFailed);
    assert_eq!(failed.count(), 1);
}

#[test]
fn lockout_after_threshold_failures_is_told_only_with_the_right_password() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    for _ in 0..9 {
        assert!(matches!(
            login(&auth, "ada@example.com", "wrong password!"),
            Err(LoginError::InvalidCredentials)
        ));
    }
    // Nine failures: the right password still works and resets the count.
    login(&auth, "ada@example.com", PASSWORD).unwrap();
    for _ in 0..10 {
        assert!(matches!(
            login(&auth, "ada@example.com", "wrong password!"),
            Err(LoginError::InvalidCredentials)
        ));
    }
    assert!(matches!(
        login(&auth, "ada@example.com", "wrong password!"),
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::Locked)
    ));
    world.advance(Duration::minutes(15));
    login(&auth, "ada@example.com", PASSWORD).unwrap();
}

#[test]
fn the_sixth_session_ends_the_oldest() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(login(&auth, "ada@example.com", PASSWORD).unwrap());
        world.advance(Duration::seconds(1));
    }
    let active = block_on(auth.sessions(user.id)).unwrap();
    assert_eq!(active.len(), 5);
    assert!(active.iter().all(|s| s.id != sessions[0].session_id));
    assert!(matches!(
        block_on(auth.check_access_token(&sessions[0].access_token)),
        Err(CredentialError::SessionExpired)
    ));
    assert!(matches!(
        block_on(auth.refresh(sessions[0].refresh_token.expose(), &client())),
        Err(RefreshError::SessionExpired)
    ));
    block_on(auth.check_access_token(&sessions[5].access_token)).unwrap();
}

#[test]
fn refresh_rotates_and_reuse_ends_the_session() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let first = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let second = block_on(auth.refresh(first.refresh_token.expose(), &client())).unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token.expose(), first.refresh_token.expose());
    // The old token again: theft signal, the whole session ends.
    assert!(matches!(
        block_on(auth.refresh(first.refresh_token.expose(), &client())),
        Err(RefreshError::InvalidToken)
    ));
    assert!(matches!(
        block_on(auth.refresh(second.refresh_token.expose(), &client())),
        Err(RefreshError::SessionExpired)
    ));
    assert!(matches!(
        block_on(auth.check_access_token(&second.access_token)),
        Err(CredentialError::SessionExpired)
    ));
    let ended = block_on(auth.events(second.user.id, None, 1)).unwrap().events;
    assert_eq!(ended[0].kind, EventKind::SessionEnded);
    assert_eq!(ended[0].details[0], ("reason".to_owned(), "refresh_reuse".to_owned()));
    assert!(matches!(
        block_on(auth.refresh("made-up", &client())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn sessions_end_after_the_idle_timeout_and_the_refresh_lifetime() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let idle = login(&auth, "ada@example.com", PASSWORD).unwrap();
    world.advance(Duration::hours(24));
    assert!(matches!(
        block_on(auth.refresh(idle.refresh_token.expose(), &client())),
        Err(RefreshError::SessionExpired)
    ));

    // Used every 23 hours, the session still ends 7 days after login.
    let mut tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    for _ in 0..8 {
        world.advance(Duration::hours(23));
        match block_on(auth.refresh(tokens.refresh_token.expose(), &client())) {
            Ok(next) => tokens = next,
            Err(RefreshError::SessionExpired) => return,
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the session outlived its 7-day refresh lifetime");
}

#[test]
fn a_principal_holds_until_its_next_recorded_use_and_never_past_its_token() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let logged_in = world.clock.now();
    // Just logged in: the session's use was recorded now; the next record is due in a minute.
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert_eq!(principal.holds_until, logged_in + Duration::seconds(60));
    // Half a minute on: still the same minute.
    world.advance(Duration::seconds(30));
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert_eq!(principal.holds_until, logged_in + Duration::seconds(60));
    // Past it: this check records the use, and holds a minute from now.
    world.advance(Duration::seconds(31));
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert_eq!(principal.holds_until, world.clock.now() + Duration::seconds(60));
    // Near the token's end, its expiry is the bound (access tokens live 15 minutes).
    world.advance(Duration::seconds(14 * 60 + 30 - 61));
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert_eq!(principal.holds_until, logged_in + Duration::minutes(15));
}

#[test]
fn access_tokens_expire_and_die_with_their_session() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert_eq!(principal.user.id, user.id);
    block_on(auth.logout(user.id, tokens.session_id, &client())).unwrap();
    assert!(matches!(
        block_on(auth.check_access_token(&tokens.access_token)),
        Err(CredentialError::SessionExpired)
    ));

    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    world.advance(Duration::minutes(15));
    assert!(matches!(
        block_on(auth.check_access_token(&tokens.access_token)),
        Err(CredentialError::TokenExpired)
    ));
}

#[test]
fn password_reset_ends_every_session_and_lifts_the_lockout() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    for _ in 0..10 {
        let _ = login(&auth, "ada@example.com", "wrong password!");
    }
    block_on(auth.forgot_password("Ada@Example.com")).unwrap();
    let token = world.last_link_token();
    // A refused password leaves the link usable.
    assert!(matches!(
        block_on(auth.reset_password(&token, "short", &client())),
        Err(ResetPasswordError::WeakPassword(PasswordError::TooShort))
    ));
    block_on(auth.reset_password(&token, "a brand new passphrase", &client())).unwrap();
    assert!(matches!(
        block_on(auth.reset_password(&token, "another new passphrase", &client())),
        Err(ResetPasswordError::LinkInvalid)
    ));
    assert!(matches!(
        block_on(auth.check_access_token(&tokens.access_token)),
        Err(CredentialError::SessionExpired)
    ));
    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::InvalidCredentials)
    ));
    login(&auth, "ada@example.com", "a brand new passphrase").unwrap();
}

#[test]
fn forgot_password_for_an_unknown_address_sends_nothing() {
    let world = World::new();
    let auth = world.auth();
    block_on(auth.forgot_password("nobody@example.com")).unwrap();
    block_on(auth.resend_verification("nobody@example.com")).unwrap();
    assert!(world.mails().is_empty());
}

#[test]
fn reset_links_expire_after_an_hour() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    block_on(auth.forgot_password("ada@example.com")).unwrap();
    world.advance(Duration::hours(1));
    assert!(matches!(
        block_on(auth.reset_password(&world.last_link_token(), "a brand new passphrase", &client())),
        Err(ResetPasswordError::LinkInvalid)
    ));
}

#[test]
fn password_change_keeps_this_session_and_ends_the_others() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let mine = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let other = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let principal = block_on(auth.check_access_token(&mine.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.change_password(&principal, "wrong password!", "a brand new passphrase", &client())),
        Err(ChangePasswordError::InvalidCredentials)
    ));
    block_on(auth.change_password(&principal, PASSWORD, "a brand new passphrase", &client())).unwrap();
    block_on(auth.check_access_token(&mine.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.check_access_token(&other.access_token)),
        Err(CredentialError::SessionExpired)
    ));
    assert!(matches!(world.mails().last(), Some(Mail::PasswordChanged { .. })));
}

#[test]
fn a_user_cannot_revoke_another_users_session() {
    let world = World::new();
    let auth = world.auth();
    let ada = world.verified_user(&auth, "ada@example.com");
    let bob = world.verified_user(&auth, "bob@example.com");
    let bobs = login(&auth, "bob@example.com", PASSWORD).unwrap();
    assert!(matches!(
        block_on(auth.revoke_session(ada.id, bobs.session_id, &client())),
        Err(NotFoundError::NotFound)
    ));
    block_on(auth.revoke_session(bob.id, bobs.session_id, &client())).unwrap();
    assert!(matches!(
        block_on(auth.revoke_session(bob.id, bobs.session_id, &client())),
        Err(NotFoundError::NotFound)
    ));
}

#[test]
fn suspension_refuses_login_either_way_and_ends_sessions() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    block_on(auth.admin_lock("ada@example.com")).unwrap();
    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::Locked)
    ));
    assert!(matches!(
        login(&auth, "ada@example.com", "wrong password!"),
        Err(LoginError::Locked)
    ));
    assert!(matches!(
        block_on(auth.check_access_token(&tokens.access_token)),
        Err(CredentialError::SessionExpired)
    ));
    block_on(auth.admin_unlock("ada@example.com")).unwrap();
    login(&auth, "ada@example.com", PASSWORD).unwrap();
    assert!(matches!(
        block_on(auth.admin_lock("nobody@example.com")),
        Err(AdminError::UnknownEmail(_))
    ));
}

#[test]
fn operators_set_plans_and_verify_addresses() {
    let world = World::new();
    let auth = world.auth();
    world.signup(&auth, "ada@example.com");
    block_on(auth.admin_verify_email("ada@example.com")).unwrap();
    block_on(auth.admin_set_plan("ada@example.com", Plan::Pro)).unwrap();
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    assert_eq!(tokens.user.plan, Plan::Pro);
}

#[test]
fn profile_updates_apply_only_what_was_sent() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let update = ProfileUpdate::parse(Some("Countess Ada"), Some(None), None, Some(Some("+44 20 7946 0958"))).unwrap();
    let updated = block_on(auth.update_profile(user.id, update)).unwrap();
    assert_eq!(updated.name, "Countess Ada");
    assert_eq!(updated.company, None);
    assert_eq!(updated.phone.as_deref(), Some("+44 20 7946 0958"));
    assert_eq!(updated.email, user.email);
}

use crate::api_key::{ApiKey, ApiKeyId};
use keys::{CreateApiKeyError, RotateApiKeyError};
use secrecy::ExposeSecret;

impl ApiKeyRepository for &MemoryStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), InfraError> {
        self.0.lock().unwrap().keys.push(key.clone());
        Ok(())
    }
    async fn api_key_by_public_id(&self, public_id: &str) -> Result<Option<ApiKey>, InfraError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys
            .iter()
            .find(|k| k.public_id == public_id)
            .cloned())
    }
    async fn api_key(&self, user: UserId, id: ApiKeyId) -> Result<Option<ApiKey>, InfraError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys
            .iter()
            .find(|k| k.id == id && k.user_id == user)
            .cloned())
    }
    async fn api_keys(&self, user: UserId) -> Result<Vec<ApiKey>, InfraError> {
        let mut keys: Vec<ApiKey> = self
            .0
            .lock()
            .unwrap()
            .keys
            .iter()
            .filter(|k| k.user_id == user)
            .cloned()
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.id));
        Ok(keys)
    }
    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let mut state = self.0.lock().unwrap();
        match state
            .keys
            .iter_mut()
            .find(|k| k.id == id && k.user_id == user && k.revoked_at.is_none())
        {
            Some(key) => {
                key.revoked_at = Some(now);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn rotate_api_key(
        &self,
        user: UserId,
        old: ApiKeyId,
        new: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        if !self.revoke_api_key(user, old, now).await? {
            return Ok(false);
        }
        self.create_api_key(new).await?;
        Ok(true)
    }
    async fn record_api_key_use(&self, uses: &[crate::usage::KeyUse]) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        if state.failing_key_use_writes > 0 {
            state.failing_key_use_writes -= 1;
            return Err(InfraError::new("the database is away"));
        }
        for used in uses {
            if let Some(key) = state.keys.iter_mut().find(|k| k.id == used.key) {
                key.last_used_at = Some(used.at);
            }
            let client = ClientContext {
                ip: used.ip.clone(),
                user_agent: used.user_agent.clone(),
            };
            state.last_clients.insert(used.key, client);
        }
        Ok(())
    }
    async fn api_key_last_client(&self, key: ApiKeyId) -> Result<ClientContext, InfraError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .last_clients
            .get(&key)
            .cloned()
            .unwrap_or_default())
    }
}

impl UsageRepository for &MemoryStore {
    async fn add_usage(&self, deltas: &[crate::usage::UsageDelta]) -> Result<(), InfraError> {
        self.0.lock().unwrap().usage.extend_from_slice(deltas);
        Ok(())
    }
    async fn usage(
        &self,
        subject: crate::usage::UsageSubject,
        range: &crate::usage::UsageRange,
    ) -> Result<Vec<crate::usage::UsageBucket>, InfraError> {
        use crate::usage::UsageSubject;
        let state = self.0.lock().unwrap();
        let of = |d: &&crate::usage::UsageDelta| match subject {
            UsageSubject::Account(user) => d.user == user && d.key.is_none(),
            UsageSubject::Key(key) => d.key == Some(key),
        };
        Ok(state
            .usage
            .iter()
            .filter(of)
            .map(|d| crate::usage::UsageBucket {
                start: range.granularity.floor(d.hour),
                counts: d.counts,
            })
            .collect())
    }
    async fn note_key_network(
        &self,
        key: ApiKeyId,
        network: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, InfraError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .key_networks
            .insert((key, network.to_owned()), at))
    }
    async fn key_networks(&self, key: ApiKeyId) -> Result<Vec<crate::usage::KeyNetworkUse>, InfraError> {
        let state = self.0.lock().unwrap();
        let mut networks: Vec<_> = state
            .key_networks
            .iter()
            .filter(|((k, _), _)| *k == key)
            .map(|((_, network), at)| crate::usage::KeyNetworkUse {
                network: network.clone(),
                first_seen: *at,
                last_seen: *at,
            })
            .collect();
        networks.sort_by_key(|n| std::cmp::Reverse(n.last_seen));
        Ok(networks)
    }
    async fn claim_usage_alert(&self, key: ApiKeyId, kind: EventKind, at: DateTime<Utc>) -> Result<bool, InfraError> {
        Ok(self.0.lock().unwrap().alerts.insert((key, kind, at.date_naive())))
    }
    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, InfraError> {
        let mut state = self.0.lock().unwrap();
        let count = state.usage.len();
        state.usage.retain(|d| d.hour >= before);
        Ok((count - state.usage.len()) as u64)
    }
}

/// A principal of `user` who signed in just now, in a session of its own.
fn signed_in(world: &World, user: &User) -> Principal {
    let now = world.clock.now();
    Principal {
        user: user.clone(),
        session_id: SessionId::from_uuid(uuid::Uuid::from_u128(
            now.timestamp_nanos_opt().unwrap_or_default() as u128
        )),
        auth_time: now,
        holds_until: now,
    }
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_api_key_is_shown_once_and_authenticates_with_its_scopes() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let created = block_on(auth.create_api_key(
        &signed_in(&world, &user),
        " Production API Key ",
        &scopes(&["agents:read", "chat:write"]),
        None,
        &client(),
    ))
    .unwrap();
    let key = created.key.expose_secret();
    assert_eq!(key.len(), 50);
    assert_eq!(created.record.prefix(), &key[..11]);
    assert_eq!(created.record.name, "Production API Key");
    let principal = block_on(auth.check_api_key(key)).unwrap();
    assert_eq!(principal.user.id, user.id);
    assert!(principal.key.scopes.contains(crate::Scope::ChatWrite));
    assert!(!principal.key.scopes.contains(crate::Scope::ChatRead));
    // Nothing of the secret is stored but its hash.
    let stored = format!("{:?}", world.store.0.lock().unwrap().keys);
    assert!(!stored.contains(&key[12..44]));
}

#[test]
fn api_key_input_is_checked() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let past = world.clock.now() - Duration::seconds(1);
    let err = block_on(auth.create_api_key(
        &signed_in(&world, &user),
        "",
        &scopes(&["agents:read", "agents:admin"]),
        Some(past),
        &client(),
    ))
    .unwrap_err();
    let CreateApiKeyError::Invalid(errors) = err else {
        panic!("{err:?}")
    };
    let codes: Vec<_> = errors.iter().map(|e| (e.field, e.code)).collect();
    assert_eq!(
        codes,
        [
            ("name", "required"),
            ("scopes", "unknown_scope"),
            ("expires_at", "in_the_past")
        ]
    );
    assert!(matches!(
        block_on(auth.create_api_key(&signed_in(&world, &user), "k", &[], None, &client())),
        Err(CreateApiKeyError::Invalid(_))
    ));
    assert!(matches!(
        block_on(auth.create_api_key(
            &signed_in(&world, &user),
            &"k".repeat(101),
            &scopes(&["chat:read"]),
            None,
            &client()
        )),
        Err(CreateApiKeyError::Invalid(_))
    ));
}

#[test]
fn revoked_expired_and_mistyped_keys_are_refused_distinctly() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let soon = world.clock.now() + Duration::minutes(1);
    let expiring = block_on(auth.create_api_key(
        &signed_in(&world, &user),
        "temp",
        &scopes(&["chat:read"]),
        Some(soon),
        &client(),
    ))
    .unwrap();
    let revoked = block_on(auth.create_api_key(
        &signed_in(&world, &user),
        "old",
        &scopes(&["chat:read"]),
        None,
        &client(),
    ))
    .unwrap();
    block_on(auth.revoke_api_key(user.id, revoked.record.id, &client())).unwrap();
    assert!(matches!(
        block_on(auth.check_api_key(revoked.key.expose_secret())),
        Err(CredentialError::ApiKeyRevoked)
    ));
    world.advance(Duration::minutes(1));
    assert!(matches!(
        block_on(auth.check_api_key(expiring.key.expose_secret())),
        Err(CredentialError::ApiKeyExpired)
    ));
    let mut typo = expiring.key.expose_secret().to_owned();
    typo.replace_range(20..21, if &typo[20..21] == "a" { "b" } else { "a" });
    assert!(matches!(
        block_on(auth.check_api_key(&typo)),
        Err(CredentialError::InvalidApiKey)
    ));
    // A well-formed key with a valid checksum but an unknown secret.
    let forged = crate::api_key::GeneratedApiKey::generate(&CountingRng(AtomicU64::new(99)));
    assert!(matches!(
        block_on(auth.check_api_key(forged.key.expose_secret())),
        Err(CredentialError::InvalidApiKey)
    ));
}

#[test]
fn rotation_keeps_name_and_scopes_and_revokes_the_old_key() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let old = block_on(auth.create_api_key(
        &signed_in(&world, &user),
        "ci",
        &scopes(&["webhooks:read"]),
        None,
        &client(),
    ))
    .unwrap();
    world.advance(Duration::seconds(1));
    let new = block_on(auth.rotate_api_key(&signed_in(&world, &user), old.record.id, None, &client())).unwrap();
    assert_ne!(new.record.id, old.record.id);
    assert_eq!((new.record.name.as_str(), new.record.scopes), ("ci", old.record.scopes));
    assert!(matches!(
        block_on(auth.check_api_key(old.key.expose_secret())),
        Err(CredentialError::ApiKeyRevoked)
    ));
    block_on(auth.check_api_key(new.key.expose_secret())).unwrap();
    assert!(matches!(
        block_on(auth.rotate_api_key(&signed_in(&world, &user), old.record.id, None, &client())),
        Err(RotateApiKeyError::NotFound)
    ));
    let listed = block_on(auth.api_keys(user.id)).unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        [new.record.id, old.record.id]
    );
}

#[test]
fn keys_of_another_user_are_not_found_and_a_suspended_owner_s_keys_are_refused() {
    let world = World::new();
    let auth = world.auth();
    let ada = world.verified_user(&auth, "ada@example.com");
    let bob = world.verified_user(&auth, "bob@example.com");
    let key =
        block_on(auth.create_api_key(&signed_in(&world, &ada), "k", &scopes(&["chat:read"]), None, &client())).unwrap();
    assert!(matches!(
        block_on(auth.api_key(bob.id, key.record.id)),
        Err(NotFoundError::NotFound)
    ));
    assert!(matches!(
        block_on(auth.revoke_api_key(bob.id, key.record.id, &client())),
        Err(NotFoundError::NotFound)
    ));
    block_on(auth.admin_lock("ada@example.com")).unwrap();
    assert!(matches!(
        block_on(auth.check_api_key(key.key.expose_secret())),
        Err(CredentialError::Locked)
    ));
}

// ---- Two-factor authentication ----

fn login_with(
    auth: &TestAuth<'_>,
    email: &str,
    totp: Option<&str>,
    recovery: Option<&str>,
) -> Result<IssuedTokens, LoginError> {
    block_on(auth.login(LoginRequest {
        email: email.into(),
        password: PASSWORD.into(),
        totp_code: totp.map(Into::into),
        recovery_code: recovery.map(Into::into),
        client: client(),
    }))
}

impl World {
    fn code_now(&self, secret: &crate::mfa::TotpSecret) -> String {
        format!("{:06}", secret.code_at_step(crate::mfa::step_of(self.clock.now())))
    }

    /// Turns 2FA on for a verified user; returns the secret and recovery codes.
    fn enable_totp(&self, auth: &TestAuth<'_>, email: &str) -> (crate::mfa::TotpSecret, Vec<String>) {
        let principal = block_on(auth.check_access_token(&login(auth, email, PASSWORD).unwrap().access_token)).unwrap();
        let setup = block_on(auth.begin_totp(&principal)).unwrap();
        let codes = block_on(auth.confirm_totp(&principal, &self.code_now(&setup.secret), &client())).unwrap();
        // The confirming code is spent; the next step's code logs in.
        self.advance(Duration::seconds(30));
        (setup.secret, codes.iter().map(|c| c.expose().to_owned()).collect())
    }

    fn user(&self, id: UserId) -> User {
        let state = self.store.0.lock().unwrap();
        state.users.iter().find(|u| u.id == id).unwrap().clone()
    }

    fn event_kinds(&self, user: UserId) -> Vec<&'static str> {
        let state = self.store.0.lock().unwrap();
        state
            .events
            .iter()
            .filter(|e| e.user_id == user)
            .map(|e| e.kind.as_str())
            .collect()
    }
}

#[test]
fn totp_setup_is_off_until_confirmed_with_a_right_code() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let principal =
        block_on(auth.check_access_token(&login(&auth, "ada@example.com", PASSWORD).unwrap().access_token)).unwrap();
    let setup = block_on(auth.begin_totp(&principal)).unwrap();
    assert!(setup
        .otpauth_uri
        .starts_with("otpauth://totp/Convosphere%20AI%3Aada%40example.com?secret="));
    assert!(setup.otpauth_uri.contains(&setup.secret.to_base32()));
    // Stored sealed, never as the plain secret.
    let stored = world.store.0.lock().unwrap().totp[&principal.user.id]
        .sealed_secret
        .clone();
    assert!(!stored.contains(&setup.secret.to_base32()));
    // Not on yet: login needs no code.
    login(&auth, "ada@example.com", PASSWORD).unwrap();
    assert!(matches!(
        block_on(auth.confirm_totp(&principal, "000000", &client())),
        Err(crate::auth::mfa::ConfirmTotpError::InvalidCode)
    ));
    let codes = block_on(auth.confirm_totp(&principal, &world.code_now(&setup.secret), &client())).unwrap();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().map(|c| c.expose().to_owned()).collect();
    assert_eq!(distinct.len(), 10);
    assert!(matches!(
        block_on(auth.confirm_totp(&principal, &world.code_now(&setup.secret), &client())),
        Err(crate::auth::mfa::ConfirmTotpError::NotPending)
    ));
    assert!(matches!(
        block_on(auth.begin_totp(&principal)),
        Err(crate::auth::mfa::BeginTotpError::AlreadyEnabled)
    ));
}

#[test]
fn with_totp_on_login_needs_a_fresh_code_after_the_right_password() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (secret, _) = world.enable_totp(&auth, "ada@example.com");
    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::MfaRequired)
    ));
    // A wrong password never reveals that 2FA is on.
    assert!(matches!(
        login(&auth, "ada@example.com", "wrong password!"),
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        login_with(&auth, "ada@example.com", Some("123456"), None),
        Err(LoginError::InvalidMfaCode)
    ));
    let code = world.code_now(&secret);
    let tokens = login_with(&auth, "ada@example.com", Some(&code), None).unwrap();
    assert!(tokens.user.mfa_enabled);
    // The same code works once.
    assert!(matches!(
        login_with(&auth, "ada@example.com", Some(&code), None),
        Err(LoginError::InvalidMfaCode)
    ));
    world.advance(Duration::seconds(30));
    login_with(&auth, "ada@example.com", Some(&world.code_now(&secret)), None).unwrap();
}

#[test]
fn a_recovery_code_logs_in_once() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let (_, codes) = world.enable_totp(&auth, "ada@example.com");
    login_with(&auth, "ada@example.com", None, Some(&codes[3].to_uppercase())).unwrap();
    assert!(matches!(
        login_with(&auth, "ada@example.com", None, Some(&codes[3])),
        Err(LoginError::InvalidMfaCode)
    ));
    login_with(&auth, "ada@example.com", None, Some(&codes[4])).unwrap();
    let events = block_on(auth.events(user.id, None, 100)).unwrap().events;
    let used = events.iter().find(|e| e.kind == EventKind::RecoveryCodeUsed).unwrap();
    assert_eq!(used.details, vec![("left".to_owned(), "8".to_owned())]);
}

#[test]
fn wrong_second_factors_count_toward_the_lockout() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (secret, _) = world.enable_totp(&auth, "ada@example.com");
    for _ in 0..10 {
        assert!(matches!(
            login_with(&auth, "ada@example.com", Some("000000"), None),
            Err(LoginError::InvalidMfaCode)
        ));
    }
    // Locked now, even with the right password and code.
    assert!(matches!(
        login_with(&auth, "ada@example.com", Some(&world.code_now(&secret)), None),
        Err(LoginError::Locked)
    ));
}

#[test]
fn disabling_totp_needs_the_password_and_a_reset_keeps_it_on() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (secret, _) = world.enable_totp(&auth, "ada@example.com");

    block_on(auth.forgot_password("ada@example.com")).unwrap();
    block_on(auth.reset_password(&world.last_link_token(), "a brand new passphrase", &client())).unwrap();
    let relogin = block_on(auth.login(LoginRequest {
        email: "ada@example.com".into(),
        password: "a brand new passphrase".into(),
        totp_code: Some(world.code_now(&secret).as_str().into()),
        client: client(),
        ..Default::default()
    }))
    .unwrap();
    assert!(relogin.user.mfa_enabled);

    let principal = block_on(auth.check_access_token(&relogin.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.disable_totp(&principal, PASSWORD, &client())),
        Err(crate::auth::mfa::DisableTotpError::InvalidCredentials)
    ));
    block_on(auth.disable_totp(&principal, "a brand new passphrase", &client())).unwrap();
    let plain = block_on(auth.login(LoginRequest {
        email: "ada@example.com".into(),
        password: "a brand new passphrase".into(),
        client: client(),
        ..Default::default()
    }))
    .unwrap();
    assert!(!plain.user.mfa_enabled);
}

// ---- The audit trail ----

#[test]
fn the_audit_trail_records_who_did_what_from_where() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    assert!(login(&auth, "ada@example.com", "wrong password!").is_err());
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let key = block_on(auth.create_api_key(
        &signed_in(&world, &user),
        "ci",
        &["chat:read".to_owned()],
        None,
        &client(),
    ))
    .unwrap();
    block_on(auth.revoke_api_key(user.id, key.record.id, &client())).unwrap();
    block_on(auth.logout(user.id, tokens.session_id, &client())).unwrap();
    block_on(auth.admin_set_plan("ada@example.com", Plan::Pro)).unwrap();
    assert_eq!(
        world.event_kinds(user.id),
        [
            "signup",
            "email_verified",
            "login_failed",
            "login_succeeded",
            "api_key_created",
            "api_key_revoked",
            "session_ended",
            "plan_changed"
        ]
    );
    let page = block_on(auth.events(user.id, None, 100)).unwrap();
    let newest = &page.events[0];
    assert_eq!(newest.kind, EventKind::PlanChanged);
    assert_eq!(newest.ip, None, "an operator's change has no client");
    let failed = page.events.iter().find(|e| e.kind == EventKind::LoginFailed).unwrap();
    assert_eq!(failed.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(
        failed.details,
        vec![("reason".to_owned(), "invalid_password".to_owned())]
    );
    let created = page.events.iter().find(|e| e.kind == EventKind::ApiKeyCreated).unwrap();
    let text = format!("{:?}", created.details);
    assert!(text.contains(&key.record.prefix()));
    assert!(
        !text.contains(secrecy::ExposeSecret::expose_secret(&key.key)),
        "no secret in events"
    );
}

#[test]
fn events_page_newest_first_with_a_cursor() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    for _ in 0..5 {
        world.advance(Duration::seconds(1));
        login(&auth, "ada@example.com", PASSWORD).unwrap();
    }
    // signup, email_verified, 5 logins: 7 events.
    let first = block_on(auth.events(user.id, None, 3)).unwrap();
    assert_eq!(first.events.len(), 3);
    assert!(first.events.windows(2).all(|w| w[0].at >= w[1].at && w[0].id > w[1].id));
    let second = block_on(auth.events(user.id, first.next, 3)).unwrap();
    let third = block_on(auth.events(user.id, second.next, 3)).unwrap();
    assert_eq!(third.events.len(), 1);
    assert_eq!(third.next, None);
    assert_eq!(third.events[0].kind, EventKind::Signup);
    assert!(first.events[2].id > second.events[0].id);
}

#[test]
fn a_lockout_is_an_event() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    for _ in 0..10 {
        assert!(login(&auth, "ada@example.com", "wrong password!").is_err());
    }
    let kinds = world.event_kinds(user.id);
    assert_eq!(kinds.iter().filter(|k| **k == "locked_out").count(), 1);
}

// ---- OAuth login ----

use crate::oauth::{
    AuthorizationRequest, CodeGrant, LinkOutcome, LinkedIdentity, PendingLogin, Provider, ProviderError,
    ProviderIdentity, RedirectPolicy,
};
use oauth::{OAuthCallback, OAuthCallbackError, OAuthExchangeError, OAuthLogin, OAuthStartError};

impl OAuthRepository for &MemoryStore {
    async fn save_pending_login(&self, pending: &PendingLogin) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        state.pending_logins.insert(pending.state, pending.clone());
        Ok(())
    }
    async fn take_pending_login(&self, hash: &TokenHash) -> Result<Option<PendingLogin>, InfraError> {
        Ok(self.0.lock().unwrap().pending_logins.remove(hash))
    }
    async fn identity_owner(&self, provider: Provider, subject: &str) -> Result<Option<UserId>, InfraError> {
        let state = self.0.lock().unwrap();
        Ok(state
            .identities
            .iter()
            .find(|i| i.provider == provider && i.subject == subject)
            .map(|i| i.user_id))
    }
    async fn identities(&self, user: UserId) -> Result<Vec<crate::oauth::IdentityRecord>, InfraError> {
        let state = self.0.lock().unwrap();
        let used = |i: &LinkedIdentity| state.identity_uses.get(&(i.provider, i.subject.clone())).copied();
        Ok(state
            .identities
            .iter()
            .filter(|i| i.user_id == user)
            .map(|i| crate::oauth::IdentityRecord {
                provider: i.provider,
                email: i.email.clone(),
                linked_at: i.created_at,
                last_used_at: used(i),
            })
            .collect())
    }
    async fn note_identity_use(&self, provider: Provider, subject: &str, at: DateTime<Utc>) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        state.identity_uses.insert((provider, subject.to_owned()), at);
        Ok(())
    }
    async fn unlink_identity(
        &self,
        user: UserId,
        provider: Provider,
    ) -> Result<crate::oauth::UnlinkOutcome, InfraError> {
        use crate::oauth::UnlinkOutcome;
        let mut state = self.0.lock().unwrap();
        let has_password = state.users.iter().any(|u| u.id == user && u.password_hash.is_some());
        let linked = state.identities.iter().filter(|i| i.user_id == user).count();
        let Some(at) = state
            .identities
            .iter()
            .position(|i| i.user_id == user && i.provider == provider)
        else {
            return Ok(UnlinkOutcome::NotLinked);
        };
        if !has_password && linked <= 1 {
            return Ok(UnlinkOutcome::LastWayIn);
        }
        state.identities.remove(at);
        Ok(UnlinkOutcome::Unlinked)
    }
    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<LinkOutcome, InfraError> {
        let mut state = self.0.lock().unwrap();
        if let Some(existing) = state
            .identities
            .iter()
            .find(|i| i.provider == identity.provider && i.subject == identity.subject)
        {
            return Ok(LinkOutcome::AlreadyLinked(existing.user_id));
        }
        state.identities.push(identity.clone());
        if let Some(user) = state
            .users
            .iter_mut()
            .find(|u| u.id == identity.user_id && !u.email_verified && u.email == identity.email)
        {
            user.email_verified = true;
            user.password_hash = None;
        }
        Ok(LinkOutcome::Linked)
    }
    async fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &LinkedIdentity,
    ) -> Result<User, CreateUserError> {
        let taken = {
            let state = self.0.lock().unwrap();
            state
                .identities
                .iter()
                .any(|i| i.provider == identity.provider && i.subject == identity.subject)
        };
        if taken {
            return Err(CreateUserError::EmailTaken);
        }
        let created = UserRepository::create_user(self, user).await?;
        self.0.lock().unwrap().identities.push(identity.clone());
        Ok(created)
    }
    async fn issue_login_code(
        &self,
        code: &TokenHash,
        user: UserId,
        provider: Provider,
        _now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        state.login_codes.insert(*code, (user, provider, expires_at, false));
        Ok(())
    }
    async fn login_code_owner(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserId, Provider)>, InfraError> {
        let state = self.0.lock().unwrap();
        match state.login_codes.get(code) {
            Some((user, provider, expires, used)) if *expires > now && !*used => Ok(Some((*user, *provider))),
            _ => Ok(None),
        }
    }
    async fn consume_login_code(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserId, Provider)>, InfraError> {
        let mut state = self.0.lock().unwrap();
        match state.login_codes.get_mut(code) {
            Some((user, provider, expires, used)) if *expires > now && !*used => {
                *used = true;
                Ok(Some((*user, *provider)))
            }
            _ => Ok(None),
        }
    }
}

/// A provider that answers what each code was set up to answer, and checks
/// that the callback hands back the PKCE verifier and nonce of the request.
#[derive(Default)]
struct FakeIdp {
    disabled: Vec<Provider>,
    /// code → what the provider says
    answers: Mutex<HashMap<String, Result<ProviderIdentity, ProviderError>>>,
    /// (verifier, nonce, redirect_uri) of each authorization request
    requests: Mutex<Vec<(String, String, String)>>,
}

impl FakeIdp {
    fn answer(&self, code: &str, answer: Result<ProviderIdentity, ProviderError>) {
        self.answers.lock().unwrap().insert(code.into(), answer);
    }
}

impl OAuthProvider for FakeIdp {
    fn is_enabled(&self, provider: Provider) -> bool {
        !self.disabled.contains(&provider)
    }
    async fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Result<String, ProviderError> {
        self.requests.lock().unwrap().push((
            request.pkce_verifier.expose().into(),
            request.nonce.into(),
            request.redirect_uri.into(),
        ));
        Ok(format!(
            "https://idp.example/{}/authorize?state={}",
            request.provider,
            request.state.expose()
        ))
    }
    async fn identify(&self, grant: &CodeGrant<'_>) -> Result<ProviderIdentity, ProviderError> {
        let sent = (
            grant.pkce_verifier.expose().to_owned(),
            grant.nonce.to_owned(),
            grant.redirect_uri.to_owned(),
        );
        if !self.requests.lock().unwrap().contains(&sent) {
            return Err(ProviderError::new("PKCE verifier or nonce mismatch"));
        }
        self.answers
            .lock()
            .unwrap()
            .remove(grant.code.expose())
            .unwrap_or_else(|| Err(ProviderError::new("invalid_grant")))
    }
}

fn oauth_login(idp: FakeIdp) -> OAuthLogin<FakeIdp> {
    OAuthLogin {
        providers: idp,
        redirects: RedirectPolicy::new("https://auth.example", &["https://app.example/".into()]).unwrap(),
    }
}

fn identity(subject: &str, email: &str, verified: bool) -> ProviderIdentity {
    ProviderIdentity {
        subject: subject.into(),
        email: Some(email.into()),
        email_verified: verified,
        name: Some("Ada Lovelace".into()),
    }
}

/// Starts a login; answers the callback query's state and the cookie.
fn start(auth: &TestAuth<'_>, oauth: &OAuthLogin<FakeIdp>, redirect_to: Option<&str>) -> (String, String) {
    let started = block_on(auth.oauth_start(oauth, Provider::Google, redirect_to)).unwrap();
    assert_eq!(started.ttl, Duration::minutes(10));
    let state = started.location.split("state=").nth(1).unwrap().to_owned();
    (state, started.browser_binding.expose().to_owned())
}

fn callback(state: &str, code: &str, cookie: Option<&str>) -> OAuthCallback {
    OAuthCallback {
        state: Some(state.into()),
        code: Some(code.into()),
        error: None,
        browser_binding: cookie.map(Into::into),
    }
}

/// Runs start and callback for `answer`; returns the callback's outcome.
fn provider_login(
    auth: &TestAuth<'_>,
    oauth: &OAuthLogin<FakeIdp>,
    redirect_to: Option<&str>,
    answer: Result<ProviderIdentity, ProviderError>,
) -> Result<String, OAuthCallbackError> {
    let (state, cookie) = start(auth, oauth, redirect_to);
    let code = format!("code-{state}");
    oauth.providers.answer(&code, answer);
    block_on(auth.oauth_callback(
        oauth,
        Provider::Google,
        callback(&state, &code, Some(&cookie)),
        &client(),
    ))
}

fn login_code(location: &str) -> String {
    location.split("code=").nth(1).unwrap().to_owned()
}

#[test]
fn a_first_provider_login_makes_a_verified_free_account_without_a_password() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let location = provider_login(
        &auth,
        &oauth,
        Some("https://app.example/after"),
        Ok(identity("g-1", "Ada@Example.com", true)),
    )
    .unwrap();
    assert!(location.starts_with("https://app.example/after?code="), "{location}");
    let tokens = block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())).unwrap();
    let user = tokens.user;
    assert_eq!(user.email.as_str(), "ada@example.com");
    assert!(user.email_verified);
    assert_eq!(user.plan, Plan::Free);
    assert_eq!(user.password_hash, None);
    assert_eq!(user.name, "Ada Lovelace");
    assert!(block_on(auth.check_access_token(&tokens.access_token)).is_ok());
    assert_eq!(world.event_kinds(user.id), ["signup", "login_succeeded"]);
    let state = world.store.0.lock().unwrap();
    let login = state
        .events
        .iter()
        .find(|e| e.kind == EventKind::LoginSucceeded)
        .unwrap();
    assert_eq!(login.details, [("method".to_owned(), "oauth:google".to_owned())]);
    assert!(state.pending_logins.is_empty(), "the state is spent");
    assert_eq!(
        oauth.providers.requests.lock().unwrap()[0].2,
        "https://auth.example/v1/auth/oauth/google/callback"
    );
}

#[test]
fn without_redirect_to_the_browser_goes_to_the_dashboard() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    assert!(
        location.starts_with("https://auth.example/dashboard?code="),
        "{location}"
    );
}

#[test]
fn a_known_identity_logs_in_to_its_account_whatever_its_address_says_now() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let first = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    let first = block_on(auth.oauth_exchange(&login_code(&first), &SecondFactor::default(), &client()))
        .unwrap()
        .user;
    // The provider now reports another, unverified address: the subject decides.
    let again = provider_login(&auth, &oauth, None, Ok(identity("g-1", "other@example.com", false))).unwrap();
    let again = block_on(auth.oauth_exchange(&login_code(&again), &SecondFactor::default(), &client()))
        .unwrap()
        .user;
    assert_eq!(again.id, first.id);
    assert!(
        block_on(auth.store.user_by_email(&Email::parse("other@example.com").unwrap()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_new_identity_joins_the_account_with_its_verified_address() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let ada = world.verified_user(&auth, "ada@example.com");
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ADA@example.com", true))).unwrap();
    let tokens = block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())).unwrap();
    assert_eq!(tokens.user.id, ada.id);
    assert!(
        tokens.user.password_hash.is_some(),
        "a verified account keeps its password"
    );
    let kinds = world.event_kinds(ada.id);
    assert_eq!(kinds[kinds.len() - 2..], ["oauth_linked", "login_succeeded"]);
    assert!(login(&auth, "ada@example.com", PASSWORD).is_ok());
}

#[test]
fn joining_an_unverified_account_verifies_it_and_drops_the_unproven_password() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    // Someone pre-registered the address with a password of their choosing.
    world.signup(&auth, "ada@example.com");
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    let user = block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client()))
        .unwrap()
        .user;
    assert!(user.email_verified);
    assert_eq!(user.password_hash, None);
    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::InvalidCredentials)
    ));
}

#[test]
fn no_verified_address_creates_nothing() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    for answer in [
        identity("g-1", "ada@example.com", false),
        ProviderIdentity {
            email: None,
            ..identity("g-1", "", true)
        },
    ] {
        let outcome = provider_login(&auth, &oauth, Some("https://app.example/cb"), Ok(answer));
        let Err(OAuthCallbackError::Failed { reason, back_to }) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.contains("verified e-mail"), "{reason}");
        assert_eq!(back_to.as_deref(), Some("https://app.example/cb?error=oauth_failed"));
    }
    let state = world.store.0.lock().unwrap();
    assert!(state.users.is_empty() && state.identities.is_empty() && state.login_codes.is_empty());
}

#[test]
fn a_state_works_once_and_only_in_the_browser_that_started_it() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let run = |state: &str, cookie: Option<&str>| {
        oauth
            .providers
            .answer("c", Ok(identity("g-1", "ada@example.com", true)));
        block_on(auth.oauth_callback(&oauth, Provider::Google, callback(state, "c", cookie), &client()))
    };
    for cookie in [None, Some("another browser's cookie")] {
        let (state, right_cookie) = start(&auth, &oauth, Some("https://app.example/cb"));
        let Err(OAuthCallbackError::Failed { reason, back_to }) = run(&state, cookie) else {
            panic!()
        };
        assert!(reason.contains("another browser"), "{reason}");
        assert_eq!(back_to, None, "nothing the attacker named is trusted");
        // The attempt spent the state: the right browser cannot use it either.
        assert!(matches!(
            run(&state, Some(&right_cookie)),
            Err(OAuthCallbackError::Failed { .. })
        ));
    }
    let (state, cookie) = start(&auth, &oauth, None);
    assert!(run(&state, Some(&cookie)).is_ok());
    let Err(OAuthCallbackError::Failed { reason, .. }) = run(&state, Some(&cookie)) else {
        panic!()
    };
    assert!(reason.contains("used already"), "{reason}");
    assert!(matches!(
        run("made-up", Some(&cookie)),
        Err(OAuthCallbackError::Failed { .. })
    ));
}

#[test]
fn a_state_expires_after_ten_minutes_and_belongs_to_its_provider() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let (state, cookie) = start(&auth, &oauth, None);
    world.advance(Duration::minutes(10));
    let outcome = block_on(auth.oauth_callback(
        &oauth,
        Provider::Google,
        callback(&state, "c", Some(&cookie)),
        &client(),
    ));
    assert!(matches!(outcome, Err(OAuthCallbackError::Failed { .. })), "{outcome:?}");

    let (state, cookie) = start(&auth, &oauth, None);
    oauth
        .providers
        .answer("c", Ok(identity("g-1", "ada@example.com", true)));
    let outcome = block_on(auth.oauth_callback(
        &oauth,
        Provider::GitHub,
        callback(&state, "c", Some(&cookie)),
        &client(),
    ));
    let Err(OAuthCallbackError::Failed { reason, .. }) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("another provider"), "{reason}");
}

#[test]
fn provider_errors_fail_the_login_and_may_return_to_redirect_to() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let (state, cookie) = start(&auth, &oauth, Some("https://app.example/cb"));
    let denied = OAuthCallback {
        state: Some(state),
        code: None,
        error: Some("access_denied".into()),
        browser_binding: Some(cookie),
    };
    let Err(OAuthCallbackError::Failed { reason, back_to }) =
        block_on(auth.oauth_callback(&oauth, Provider::Google, denied, &client()))
    else {
        panic!()
    };
    assert!(reason.contains("access_denied"), "{reason}");
    assert_eq!(back_to.as_deref(), Some("https://app.example/cb?error=oauth_failed"));

    let outcome = provider_login(
        &auth,
        &oauth,
        None,
        Err(ProviderError::new("the token endpoint answered 500")),
    );
    let Err(OAuthCallbackError::Failed { reason, back_to: None }) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("500"), "{reason}");
}

#[test]
fn the_callback_hands_the_provider_the_request_s_pkce_verifier_and_nonce() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let (state, cookie) = start(&auth, &oauth, None);
    // Tamper with the stored nonce: the provider's check must fail.
    world
        .store
        .0
        .lock()
        .unwrap()
        .pending_logins
        .values_mut()
        .for_each(|p| p.nonce = "tampered".into());
    oauth
        .providers
        .answer("c", Ok(identity("g-1", "ada@example.com", true)));
    let outcome = block_on(auth.oauth_callback(
        &oauth,
        Provider::Google,
        callback(&state, "c", Some(&cookie)),
        &client(),
    ));
    let Err(OAuthCallbackError::Failed { reason, .. }) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("nonce mismatch"), "{reason}");
    // The verifier is stored sealed, never in the clear.
    let (verifier, _, _) = oauth.providers.requests.lock().unwrap()[0].clone();
    let _ = start(&auth, &oauth, None);
    let state = world.store.0.lock().unwrap();
    assert!(state.pending_logins.values().all(|p| p.sealed_verifier != verifier));
}

#[test]
fn a_suspended_account_cannot_log_in_through_a_provider() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    world.verified_user(&auth, "ada@example.com");
    block_on(auth.admin_lock("ada@example.com")).unwrap();
    let outcome = provider_login(
        &auth,
        &oauth,
        Some("/settings"),
        Ok(identity("g-1", "ada@example.com", true)),
    );
    let Err(OAuthCallbackError::Locked { back_to }) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        back_to.as_deref(),
        Some("https://auth.example/settings?error=account_locked")
    );
    assert!(world.store.0.lock().unwrap().identities.is_empty(), "nothing linked");

    // Suspended between callback and exchange.
    world.verified_user(&auth, "grace@example.com");
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-2", "grace@example.com", true))).unwrap();
    block_on(auth.admin_lock("grace@example.com")).unwrap();
    assert!(matches!(
        block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())),
        Err(OAuthExchangeError::Locked)
    ));
}

#[test]
fn the_login_code_works_once_and_for_a_minute() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    let code = login_code(&location);
    block_on(auth.oauth_exchange(&code, &SecondFactor::default(), &client())).unwrap();
    assert!(matches!(
        block_on(auth.oauth_exchange(&code, &SecondFactor::default(), &client())),
        Err(OAuthExchangeError::Failed)
    ));
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    world.advance(Duration::seconds(60));
    assert!(matches!(
        block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())),
        Err(OAuthExchangeError::Failed)
    ));
    assert!(matches!(
        block_on(auth.oauth_exchange("made-up", &SecondFactor::default(), &client())),
        Err(OAuthExchangeError::Failed)
    ));
}

#[test]
fn provider_logins_count_toward_the_session_cap() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
        let tokens =
            block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())).unwrap();
        sessions.push(tokens);
        world.advance(Duration::seconds(1));
    }
    let user = sessions[0].user.id;
    assert_eq!(block_on(auth.sessions(user)).unwrap().len(), 5);
    assert!(matches!(
        block_on(auth.check_access_token(&sessions[0].access_token)),
        Err(CredentialError::SessionExpired)
    ));
}

#[test]
fn unconfigured_providers_and_foreign_redirects_are_refused_at_start() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp {
        disabled: vec![Provider::Facebook],
        ..FakeIdp::default()
    });
    assert!(matches!(
        block_on(auth.oauth_start(&oauth, Provider::Facebook, None)),
        Err(OAuthStartError::ProviderNotFound)
    ));
    for evil in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "https://app.example@evil.example/",
    ] {
        assert!(
            matches!(
                block_on(auth.oauth_start(&oauth, Provider::Google, Some(evil))),
                Err(OAuthStartError::InvalidRedirect(_))
            ),
            "{evil}"
        );
    }
    assert!(world.store.0.lock().unwrap().pending_logins.is_empty());
}

#[test]
fn a_provider_login_of_an_account_with_2fa_needs_its_second_factor() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let ada = world.verified_user(&auth, "ada@example.com").id;
    let (secret, recovery) = world.enable_totp(&auth, "ada@example.com");
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    let code = login_code(&location);
    let factor = |totp: Option<&str>, recovery: Option<&str>| SecondFactor {
        totp_code: totp.map(Into::into),
        recovery_code: recovery.map(Into::into),
    };

    // No factor: asked for one, and the code is kept for the retry.
    assert!(matches!(
        block_on(auth.oauth_exchange(&code, &SecondFactor::default(), &client())),
        Err(OAuthExchangeError::MfaRequired)
    ));
    // A wrong one is refused and counted.
    assert!(matches!(
        block_on(auth.oauth_exchange(&code, &factor(Some("000000"), None), &client())),
        Err(OAuthExchangeError::InvalidMfaCode)
    ));
    assert_eq!(world.user(ada).failed_logins, 1);
    // The right one signs in, once; the count starts again.
    let now = world.code_now(&secret);
    let tokens = block_on(auth.oauth_exchange(&code, &factor(Some(&now), None), &client())).unwrap();
    assert_eq!(tokens.user.id, ada);
    assert_eq!(world.user(ada).failed_logins, 0);
    assert!(matches!(
        block_on(auth.oauth_exchange(&code, &factor(Some(&now), None), &client())),
        Err(OAuthExchangeError::Failed)
    ));
    let state = world.store.0.lock().unwrap();
    let login = state
        .events
        .iter()
        .rfind(|e| e.kind == EventKind::LoginSucceeded)
        .unwrap();
    assert_eq!(login.details, [("method".to_owned(), "oauth:google+totp".to_owned())]);
    drop(state);

    // A recovery code works instead; then it is spent.
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    block_on(auth.oauth_exchange(&login_code(&location), &factor(None, Some(&recovery[0])), &client())).unwrap();
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    assert!(matches!(
        block_on(auth.oauth_exchange(&login_code(&location), &factor(None, Some(&recovery[0])), &client())),
        Err(OAuthExchangeError::InvalidMfaCode)
    ));
}

#[test]
fn wrong_second_factors_after_a_provider_login_lock_the_account() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let ada = world.verified_user(&auth, "ada@example.com").id;
    let (secret, _) = world.enable_totp(&auth, "ada@example.com");
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    let code = login_code(&location);
    let wrong = SecondFactor {
        totp_code: Some("000000".into()),
        recovery_code: None,
    };
    let threshold = auth.config.lockout_threshold;
    for _ in 0..threshold {
        assert!(matches!(
            block_on(auth.oauth_exchange(&code, &wrong, &client())),
            Err(OAuthExchangeError::InvalidMfaCode)
        ));
    }
    assert!(world.event_kinds(ada).contains(&"locked_out"));
    assert!(world.user(ada).is_locked_out(world.clock.now()));
    // Locked: not even the right code gets in, and none is checked.
    let right = SecondFactor {
        totp_code: Some(SecretString::from(world.code_now(&secret))),
        recovery_code: None,
    };
    assert!(matches!(
        block_on(auth.oauth_exchange(&code, &right, &client())),
        Err(OAuthExchangeError::Locked)
    ));
    let failures = world.event_kinds(ada).iter().filter(|k| **k == "login_failed").count();
    assert_eq!(
        failures,
        usize::try_from(threshold).unwrap() + 1,
        "the last one as locked_out"
    );
}

#[test]
fn wrong_passwords_behind_a_session_count_toward_the_lockout() {
    let world = World::new();
    let auth = world.auth();
    let ada = world.verified_user(&auth, "ada@example.com").id;
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let threshold = auth.config.lockout_threshold;
    // A thief with the access token guesses at the password change and at
    // 2FA disable: both count, as at login.
    for attempt in 0..threshold {
        let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
        if attempt % 2 == 0 {
            assert!(matches!(
                block_on(auth.change_password(&principal, "a wrong guess 1", "a brand new passphrase", &client())),
                Err(ChangePasswordError::InvalidCredentials)
            ));
        } else {
            assert!(matches!(
                block_on(auth.disable_totp(&principal, "a wrong guess 2", &client())),
                Err(crate::auth::mfa::DisableTotpError::InvalidCredentials)
            ));
        }
    }
    assert!(world.user(ada).is_locked_out(world.clock.now()));
    assert!(world.event_kinds(ada).contains(&"locked_out"));
    // Locked: even the right password is not checked, anywhere.
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.change_password(&principal, PASSWORD, "a brand new passphrase", &client())),
        Err(ChangePasswordError::Locked)
    ));
    assert!(matches!(
        block_on(auth.disable_totp(&principal, PASSWORD, &client())),
        Err(crate::auth::mfa::DisableTotpError::Locked)
    ));
    assert!(matches!(
        login(&auth, "ada@example.com", PASSWORD),
        Err(LoginError::Locked)
    ));
    // It ends with the lockout.
    world.advance(auth.config.lockout_duration);
    let fresh = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let principal = block_on(auth.check_access_token(&fresh.access_token)).unwrap();
    block_on(auth.change_password(&principal, PASSWORD, "a brand new passphrase", &client())).unwrap();
}

#[test]
fn turning_2fa_on_or_off_ends_every_other_session() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let mine = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let thief = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let principal = block_on(auth.check_access_token(&mine.access_token)).unwrap();
    let setup = block_on(auth.begin_totp(&principal)).unwrap();
    // Only beginning the setup changes nothing yet.
    block_on(auth.check_access_token(&thief.access_token)).unwrap();
    block_on(auth.confirm_totp(&principal, &world.code_now(&setup.secret), &client())).unwrap();
    block_on(auth.check_access_token(&mine.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.check_access_token(&thief.access_token)),
        Err(CredentialError::SessionExpired)
    ));

    world.advance(Duration::seconds(30));
    let other = block_on(auth.login(LoginRequest {
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
        totp_code: Some(SecretString::from(world.code_now(&setup.secret))),
        client: client(),
        ..Default::default()
    }))
    .unwrap();
    let principal = block_on(auth.check_access_token(&mine.access_token)).unwrap();
    block_on(auth.disable_totp(&principal, PASSWORD, &client())).unwrap();
    block_on(auth.check_access_token(&mine.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.check_access_token(&other.access_token)),
        Err(CredentialError::SessionExpired)
    ));
    let ended: Vec<_> = world
        .store
        .0
        .lock()
        .unwrap()
        .sessions
        .iter()
        .filter_map(|s| s.end_reason)
        .map(|r| r.as_str())
        .collect();
    assert_eq!(ended, ["mfa_changed", "mfa_changed"]);
}

// ---- The gateway decision (`authorize`) and the credential cache ----

use crate::auth::gateway::{AuthorizeError, Caller, CredentialError, REMEMBER_AT_MOST};
use crate::{Scope, ScopeSet};

/// Counts requests per subject; a budget is spent after `per_minute` of them.
#[derive(Default)]
struct FakeLimiter(Mutex<HashMap<RateSubject, u32>>);
impl RateLimiter for &FakeLimiter {
    async fn check(&self, subject: RateSubject, per_minute: u32) -> Result<RateLimitDecision, InfraError> {
        let mut counts = self.0.lock().unwrap();
        let used = counts.entry(subject).or_default();
        let allowed = *used < per_minute;
        if allowed {
            *used += 1;
        }
        Ok(RateLimitDecision {
            allowed,
            limit: per_minute,
            remaining: per_minute - *used,
            reset_after: std::time::Duration::from_secs(60),
            retry_after: (!allowed).then(|| std::time::Duration::from_secs(1)),
        })
    }
}

/// The cache of credentials, as simple as it can be: a map, forgotten by
/// looking at every entry.
#[derive(Default)]
struct FakeCache {
    entries: Mutex<HashMap<CredentialKey, (Caller, DateTime<Utc>)>>,
    generation: AtomicU64,
    touching: Mutex<std::collections::HashSet<SessionId>>,
    refused: Mutex<HashMap<std::net::IpAddr, DateTime<Utc>>>,
}
impl CredentialCache for FakeCache {
    fn get(&self, key: &CredentialKey, now: DateTime<Utc>) -> Option<Caller> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(caller, _)| caller.clone())
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
    fn insert(&self, key: CredentialKey, caller: Caller, until: DateTime<Utc>) {
        self.entries.lock().unwrap().insert(key, (caller, until));
    }
    fn remove(&self, key: &CredentialKey) {
        self.entries.lock().unwrap().remove(key);
    }
    fn forget(&self, invalidation: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap()
            .retain(|_, (caller, _)| match invalidation {
                Invalidation::User(id) => caller.user().id != *id,
                Invalidation::Session(id) => caller.session_id() != Some(*id),
                Invalidation::ApiKey(public_id) => !matches!(caller, Caller::Key(k) if k.key.public_id == *public_id),
            });
    }
    fn claim_touch(&self, session: SessionId) -> bool {
        self.touching.lock().unwrap().insert(session)
    }
    fn release_touch(&self, session: SessionId) {
        self.touching.lock().unwrap().remove(&session);
    }
    fn refuse_client(&self, client: std::net::IpAddr, until: DateTime<Utc>) {
        self.refused.lock().unwrap().insert(client, until);
    }
    fn refused_until(&self, client: std::net::IpAddr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.refused
            .lock()
            .unwrap()
            .get(&client)
            .copied()
            .filter(|until| now < *until)
    }
}

impl World {
    fn session_reads(&self) -> u64 {
        self.store.0.lock().unwrap().session_reads
    }

    fn key(&self, auth: &TestAuth<'_>, user: &User, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let created =
            block_on(auth.create_api_key(&signed_in(self, user), "ci", &scopes, None, &ClientContext::default()))
                .unwrap();
        created.key.expose_secret().to_owned()
    }
}

fn refused(result: Result<crate::auth::gateway::Authorization, AuthorizeError>) -> CredentialError {
    match result {
        Err(AuthorizeError::Credential(e)) => e,
        other => panic!("expected a refused credential, got {other:?}"),
    }
}

#[test]
fn a_checked_token_is_answered_from_the_cache_until_it_must_be_checked_again() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let token = login(&auth, "ada@example.com", PASSWORD).unwrap().access_token;
    let reads = world.session_reads();
    for _ in 0..3 {
        block_on(auth.authorize(&token, ScopeSet::EMPTY)).unwrap();
    }
    assert_eq!(world.session_reads(), reads + 1, "checked once, then remembered");
    world.advance(REMEMBER_AT_MOST);
    block_on(auth.authorize(&token, ScopeSet::EMPTY)).unwrap();
    assert_eq!(world.session_reads(), reads + 2, "remembered for a while only");
}

#[test]
fn a_logout_is_honoured_on_the_next_call() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let caller = block_on(auth.authorize(&tokens.access_token, ScopeSet::EMPTY))
        .unwrap()
        .caller;
    block_on(auth.logout(caller.user().id, tokens.session_id, &ClientContext::default())).unwrap();
    assert!(matches!(
        refused(block_on(auth.authorize(&tokens.access_token, ScopeSet::EMPTY))),
        CredentialError::SessionExpired
    ));
}

#[test]
fn a_revoked_key_is_refused_on_the_next_call() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let key = world.key(&auth, &user, &["agents:read"]);
    let other = world.key(&auth, &user, &["agents:read"]);
    let authorized = block_on(auth.authorize(&key, ScopeSet::EMPTY)).unwrap();
    block_on(auth.authorize(&other, ScopeSet::EMPTY)).unwrap();
    let Caller::Key(principal) = authorized.caller else {
        panic!("a key is a key's caller")
    };
    block_on(auth.revoke_api_key(user.id, principal.key.id, &ClientContext::default())).unwrap();
    assert!(matches!(
        refused(block_on(auth.authorize(&key, ScopeSet::EMPTY))),
        CredentialError::ApiKeyRevoked
    ));
    // Only that key is forgotten.
    assert!(world.cache.get(&CredentialKey::of(&other), world.clock.now()).is_some());
}

#[test]
fn a_suspension_is_honoured_on_the_next_call_for_keys_and_tokens() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let key = world.key(&auth, &user, &["chat:read"]);
    let token = login(&auth, "ada@example.com", PASSWORD).unwrap().access_token;
    block_on(auth.authorize(&key, ScopeSet::EMPTY)).unwrap();
    block_on(auth.authorize(&token, ScopeSet::EMPTY)).unwrap();
    block_on(auth.admin_lock("ada@example.com")).unwrap();
    assert!(matches!(
        refused(block_on(auth.authorize(&key, ScopeSet::EMPTY))),
        CredentialError::Locked
    ));
    assert!(matches!(
        refused(block_on(auth.authorize(&token, ScopeSet::EMPTY))),
        CredentialError::SessionExpired
    ));
}

#[test]
fn a_plan_change_is_honoured_on_the_next_call() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let key = world.key(&auth, &user, &["chat:read"]);
    let before = block_on(auth.authorize(&key, ScopeSet::EMPTY)).unwrap();
    assert_eq!((before.caller.user().plan, before.budget.limit), (Plan::Free, 100));
    block_on(auth.admin_set_plan("ada@example.com", Plan::Pro)).unwrap();
    let after = block_on(auth.authorize(&key, ScopeSet::EMPTY)).unwrap();
    assert_eq!((after.caller.user().plan, after.budget.limit), (Plan::Pro, 10_000));
}

#[test]
fn a_check_that_races_an_invalidation_does_not_remember_what_it_read() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let (session, cache, now) = (tokens.session_id, world.cache.clone(), world.clock.now());
    // A logout commits (and is forgotten) just after the check read the session.
    world.store.0.lock().unwrap().after_session_read = Some(Box::new(move |state: &mut State| {
        let ended = state.sessions.iter_mut().find(|s| s.id == session).unwrap();
        ended.ended_at = Some(now);
        cache.forget(&Invalidation::Session(session));
    }));
    // The racing check itself may let its request through, as it read before the logout...
    block_on(auth.authorize(&tokens.access_token, ScopeSet::EMPTY)).unwrap();
    // ...but it must not have put the stale caller into the cache.
    assert!(matches!(
        refused(block_on(auth.authorize(&tokens.access_token, ScopeSet::EMPTY))),
        CredentialError::SessionExpired
    ));
}

#[test]
fn a_missing_scope_and_an_empty_budget_come_back_as_their_outcomes() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let key = world.key(&auth, &user, &["agents:read"]);
    let required: ScopeSet = [Scope::AgentsRead, Scope::ChatWrite].into_iter().collect();
    match block_on(auth.authorize(&key, required)) {
        Err(AuthorizeError::InsufficientScope { missing, budget, .. }) => {
            assert_eq!(missing, Scope::ChatWrite);
            assert_eq!(budget.remaining, 99, "the refused request was counted");
        }
        other => panic!("expected insufficient_scope, got {other:?}"),
    }
    // A user's token holds every scope.
    let token = login(&auth, "ada@example.com", PASSWORD).unwrap().access_token;
    block_on(auth.authorize(&token, ScopeSet::all())).unwrap();
    // The account's budget is shared by its keys and sessions.
    for _ in 2..100 {
        block_on(auth.authorize(&key, ScopeSet::EMPTY)).unwrap();
    }
    match block_on(auth.authorize(&token, ScopeSet::EMPTY)) {
        Err(AuthorizeError::RateLimited { budget, .. }) => assert!(!budget.allowed && budget.retry_after.is_some()),
        other => panic!("expected rate_limited, got {other:?}"),
    }
}

#[test]
fn refused_credentials_are_never_remembered() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let key = world.key(&auth, &user, &["agents:read"]);
    let typo = format!("{}x", &key[..key.len() - 1]);
    assert!(matches!(
        refused(block_on(auth.authorize(&typo, ScopeSet::EMPTY))),
        CredentialError::InvalidApiKey
    ));
    assert!(matches!(
        refused(block_on(auth.authorize("not-a-jwt", ScopeSet::EMPTY))),
        CredentialError::InvalidToken
    ));
    assert!(world.cache.entries.lock().unwrap().is_empty());
}

#[test]
fn a_session_whose_use_is_being_recorded_is_not_recorded_twice() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let last_active = |world: &World| {
        let state = world.store.0.lock().unwrap();
        state
            .sessions
            .iter()
            .find(|s| s.id == tokens.session_id)
            .unwrap()
            .last_active_at
    };
    let opened = last_active(&world);
    world.advance(Duration::minutes(2));
    // Another request's touch of this session is in flight: this one writes nothing.
    assert!(world.cache.claim_touch(tokens.session_id));
    block_on(auth.authorize(&tokens.access_token, ScopeSet::EMPTY)).unwrap();
    assert_eq!(last_active(&world), opened);
    world.cache.release_touch(tokens.session_id);
    // Its claim was not released by the request that found it taken.
    assert!(world.cache.claim_touch(tokens.session_id));
    world.cache.release_touch(tokens.session_id);
    world.advance(REMEMBER_AT_MOST + Duration::minutes(1));
    block_on(auth.authorize(&tokens.access_token, ScopeSet::EMPTY)).unwrap();
    assert_eq!(last_active(&world), world.clock.now());
    assert!(
        world.cache.touching.lock().unwrap().is_empty(),
        "the claim ends with the write"
    );
}

/// The session of a fresh login of `email`, as the gateway sees it.
fn fresh_session(auth: &TestAuth<'_>, email: &str) -> (IssuedTokens, Principal) {
    let tokens = login(auth, email, PASSWORD).unwrap();
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    (tokens, principal)
}

#[test]
fn sensitive_actions_need_a_sign_in_within_the_window_and_change_nothing_without() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (_, principal) = fresh_session(&auth, "ada@example.com");
    let ten_minutes = AuthConfig::default().reauth_window;
    world.advance(ten_minutes - Duration::seconds(1));
    let key = block_on(auth.create_api_key(&principal, "ci", &scopes(&["chat:read"]), None, &client())).unwrap();
    world.advance(Duration::seconds(1));
    let stale = |result| matches!(result, Err(CreateApiKeyError::RecentSignInRequired(_)));
    assert!(stale(block_on(auth.create_api_key(
        &principal,
        "late",
        &scopes(&["chat:read"]),
        None,
        &client()
    ))));
    assert!(matches!(
        block_on(auth.rotate_api_key(&principal, key.record.id, None, &client())),
        Err(RotateApiKeyError::RecentSignInRequired(_))
    ));
    assert!(matches!(
        block_on(auth.begin_totp(&principal)),
        Err(super::mfa::BeginTotpError::RecentSignInRequired(_))
    ));
    // Nothing changed: one key, still active, and no 2FA setup pending.
    let keys = block_on(auth.api_keys(principal.user.id)).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked_at.is_none());
    assert!(block_on((&world.store).totp(principal.user.id)).unwrap().is_none());
}

#[test]
fn reauthentication_renews_the_session_and_counts_a_wrong_password() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (before, principal) = fresh_session(&auth, "ada@example.com");
    world.advance(Duration::minutes(30));
    let none = SecondFactor::default();
    assert!(matches!(
        block_on(auth.reauthenticate(&principal, "wrong password!", &none, &client())),
        Err(super::recent::ReauthenticateError::Refused(
            LoginError::InvalidCredentials
        ))
    ));
    let user = block_on((&world.store).user_by_id(principal.user.id)).unwrap().unwrap();
    assert_eq!(user.failed_logins, 1, "a wrong password counts toward the lockout");
    let renewed = block_on(auth.reauthenticate(&principal, PASSWORD, &none, &client())).unwrap();
    assert_eq!(renewed.session_id, before.session_id);
    let claims = auth.signer.verify(&renewed.access_token, world.clock.now()).unwrap();
    assert_eq!(claims.session_id, before.session_id);
    let renewed_principal = block_on(auth.check_access_token(&renewed.access_token)).unwrap();
    assert_eq!(renewed_principal.auth_time, world.clock.now());
    block_on(auth.create_api_key(&renewed_principal, "ci", &scopes(&["chat:read"]), None, &client())).unwrap();
    let events = block_on(auth.events(principal.user.id, None, 1)).unwrap().events;
    assert_eq!(events[0].kind, EventKind::ApiKeyCreated);
    // The refresh token from before the re-authentication is used up: presenting it is a reuse.
    assert!(matches!(
        block_on(auth.refresh(before.refresh_token.expose(), &client())),
        Err(RefreshError::InvalidToken)
    ));
}

#[test]
fn reauthentication_asks_for_the_second_factor_when_2fa_is_on() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (secret, _) = world.enable_totp(&auth, "ada@example.com");
    world.advance(Duration::seconds(30));
    let tokens = login_with(&auth, "ada@example.com", Some(&world.code_now(&secret)), None).unwrap();
    let principal = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    world.advance(Duration::minutes(11));
    assert!(matches!(
        block_on(auth.reauthenticate(&principal, PASSWORD, &SecondFactor::default(), &client())),
        Err(super::recent::ReauthenticateError::Refused(LoginError::MfaRequired))
    ));
    let code = SecondFactor {
        totp_code: Some(world.code_now(&secret).into()),
        recovery_code: None,
    };
    let renewed = block_on(auth.reauthenticate(&principal, PASSWORD, &code, &client())).unwrap();
    let claims = auth.signer.verify(&renewed.access_token, world.clock.now()).unwrap();
    assert_eq!(claims.session_id, tokens.session_id);
}

#[test]
fn a_password_change_with_the_right_password_counts_as_reauthentication() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let (tokens, principal) = fresh_session(&auth, "ada@example.com");
    world.advance(Duration::minutes(12));
    block_on(auth.change_password(&principal, PASSWORD, "a brand new passphrase", &client())).unwrap();
    let renewed = block_on(auth.check_access_token(&tokens.access_token)).unwrap();
    assert_eq!(renewed.auth_time, world.clock.now());
    block_on(auth.create_api_key(&renewed, "ci", &scopes(&["chat:read"]), None, &client())).unwrap();
    // The refresh token still works: nothing was rotated.
    block_on(auth.refresh(tokens.refresh_token.expose(), &client())).unwrap();
}

#[test]
fn one_mailbox_gets_a_bounded_number_of_links_however_many_ask() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let before = world.mails().len();
    for _ in 0..5 {
        block_on(auth.forgot_password("ada@example.com")).unwrap();
    }
    assert_eq!(world.mails().len() - before, MAILS_PER_MINUTE as usize);
    // The newest link sent is the one that works.
    block_on(auth.reset_password(&world.last_link_token(), "a brand new passphrase", &client())).unwrap();
}

#[test]
fn a_network_whose_unknown_credentials_keep_failing_is_refused_without_a_lookup() {
    use crate::auth::gateway::FAILED_CHECKS_PER_MINUTE;
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let cached = world.key(&auth, &user, &["chat:read"]);
    let uncached = world.key(&auth, &user, &["chat:read"]);
    let attacker: std::net::IpAddr = "2001:db8:7:7::1".parse().unwrap();
    let neighbour: std::net::IpAddr = "2001:db8:7:7::ffff".parse().unwrap();
    let elsewhere: std::net::IpAddr = "192.0.2.9".parse().unwrap();
    let check = |key: &str, from| block_on(auth.authenticate_from(key, Some(from)));
    check(&cached, elsewhere).unwrap();
    let rng = CountingRng(AtomicU64::new(u64::MAX / 3));
    let forged = || {
        crate::api_key::GeneratedApiKey::generate(&rng)
            .key
            .expose_secret()
            .to_owned()
    };
    for _ in 0..=FAILED_CHECKS_PER_MINUTE {
        let outcome = check(&forged(), attacker);
        assert!(matches!(outcome, Err(CredentialError::InvalidApiKey)), "{outcome:?}");
    }
    // The budget is spent: the network's next checks that miss the cache are refused unchecked.
    for from in [attacker, neighbour] {
        assert!(matches!(
            check(&forged(), from),
            Err(CredentialError::TooManyFailures { .. })
        ));
        assert!(matches!(
            check(&uncached, from),
            Err(CredentialError::TooManyFailures { .. })
        ));
    }
    // A credential checked before still passes from the cache, and other networks are not touched.
    check(&cached, attacker).unwrap();
    check(&uncached, elsewhere).unwrap();
    // Without a known client nothing is counted.
    block_on(auth.authenticate(&forged())).unwrap_err();
    world.advance(Duration::seconds(61));
    assert!(matches!(
        check(&forged(), attacker),
        Err(CredentialError::InvalidApiKey)
    ));
}

mod identities;
mod usage;
