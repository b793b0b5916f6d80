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

#[derive(Default)]
struct State {
    users: Vec<User>,
    sessions: Vec<Session>,
    /// refresh hash → (session, used)
    refresh: HashMap<TokenHash, (SessionId, bool)>,
    /// token hash → (kind, user, expires, used)
    tokens: HashMap<TokenHash, (TokenKind, UserId, DateTime<Utc>, bool)>,
    keys: Vec<crate::api_key::ApiKey>,
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
    async fn create_session(
        &self,
        session: &Session,
        refresh: &TokenHash,
        max: u32,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, InfraError> {
        let mut state = self.0.lock().unwrap();
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
            return Ok(RefreshOutcome::Reused);
        }
        session.last_active_at = now;
        let session = session.clone();
        state.refresh.insert(*presented, (sid, true));
        state.refresh.insert(*replacement, (sid, false));
        Ok(RefreshOutcome::Rotated(session))
    }
    async fn session(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        Ok(self.0.lock().unwrap().sessions.iter().find(|s| s.id == id).cloned())
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

struct World {
    store: MemoryStore,
    hasher: FakeHasher,
    mailer: FakeMailer,
    clock: Arc<FakeClock>,
}

type TestAuth<'a> = Auth<&'a MemoryStore, &'a FakeHasher, FakeSigner, &'a FakeMailer>;

impl World {
    fn new() -> Self {
        Self {
            store: MemoryStore::default(),
            hasher: FakeHasher::default(),
            mailer: FakeMailer::default(),
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
            self.clock.clone(),
            Arc::new(CountingRng(AtomicU64::new(1))),
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
        block_on(auth.verify_email(&self.last_link_token())).unwrap()
    }
}

fn login(auth: &TestAuth<'_>, email: &str, password: &str) -> Result<IssuedTokens, LoginError> {
    block_on(auth.login(LoginRequest {
        email: email.into(),
        password: password.into(),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("test".into()),
    }))
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
    let user = block_on(auth.verify_email(&world.last_link_token())).unwrap();
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
        block_on(auth.verify_email(&first)),
        Err(LinkError::LinkInvalid)
    ));
    block_on(auth.verify_email(&second)).unwrap();
    assert!(matches!(
        block_on(auth.verify_email(&second)),
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
        block_on(auth.verify_email(&world.last_link_token())),
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
        block_on(auth.authenticate(&sessions[0].access_token)),
        Err(AuthenticateError::SessionExpired)
    ));
    assert!(matches!(
        block_on(auth.refresh(sessions[0].refresh_token.expose())),
        Err(RefreshError::SessionExpired)
    ));
    block_on(auth.authenticate(&sessions[5].access_token)).unwrap();
}

#[test]
fn refresh_rotates_and_reuse_ends_the_session() {
    let world = World::new();
    let auth = world.auth();
    world.verified_user(&auth, "ada@example.com");
    let first = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let second = block_on(auth.refresh(first.refresh_token.expose())).unwrap();
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.refresh_token.expose(), first.refresh_token.expose());
    // The old token again: theft signal, the whole session ends.
    assert!(matches!(
        block_on(auth.refresh(first.refresh_token.expose())),
        Err(RefreshError::InvalidToken)
    ));
    assert!(matches!(
        block_on(auth.refresh(second.refresh_token.expose())),
        Err(RefreshError::SessionExpired)
    ));
    assert!(matches!(
        block_on(auth.authenticate(&second.access_token)),
        Err(AuthenticateError::SessionExpired)
    ));
    assert!(matches!(
        block_on(auth.refresh("made-up")),
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
        block_on(auth.refresh(idle.refresh_token.expose())),
        Err(RefreshError::SessionExpired)
    ));

    // Used every 23 hours, the session still ends 7 days after login.
    let mut tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    for _ in 0..8 {
        world.advance(Duration::hours(23));
        match block_on(auth.refresh(tokens.refresh_token.expose())) {
            Ok(next) => tokens = next,
            Err(RefreshError::SessionExpired) => return,
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the session outlived its 7-day refresh lifetime");
}

#[test]
fn access_tokens_expire_and_die_with_their_session() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    let principal = block_on(auth.authenticate(&tokens.access_token)).unwrap();
    assert_eq!(principal.user.id, user.id);
    block_on(auth.logout(user.id, tokens.session_id)).unwrap();
    assert!(matches!(
        block_on(auth.authenticate(&tokens.access_token)),
        Err(AuthenticateError::SessionExpired)
    ));

    let tokens = login(&auth, "ada@example.com", PASSWORD).unwrap();
    world.advance(Duration::minutes(15));
    assert!(matches!(
        block_on(auth.authenticate(&tokens.access_token)),
        Err(AuthenticateError::TokenExpired)
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
        block_on(auth.reset_password(&token, "short")),
        Err(ResetPasswordError::WeakPassword(PasswordError::TooShort))
    ));
    block_on(auth.reset_password(&token, "a brand new passphrase")).unwrap();
    assert!(matches!(
        block_on(auth.reset_password(&token, "another new passphrase")),
        Err(ResetPasswordError::LinkInvalid)
    ));
    assert!(matches!(
        block_on(auth.authenticate(&tokens.access_token)),
        Err(AuthenticateError::SessionExpired)
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
        block_on(auth.reset_password(&world.last_link_token(), "a brand new passphrase")),
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
    let principal = block_on(auth.authenticate(&mine.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.change_password(&principal, "wrong password!", "a brand new passphrase")),
        Err(ChangePasswordError::InvalidCredentials)
    ));
    block_on(auth.change_password(&principal, PASSWORD, "a brand new passphrase")).unwrap();
    block_on(auth.authenticate(&mine.access_token)).unwrap();
    assert!(matches!(
        block_on(auth.authenticate(&other.access_token)),
        Err(AuthenticateError::SessionExpired)
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
        block_on(auth.revoke_session(ada.id, bobs.session_id)),
        Err(NotFoundError::NotFound)
    ));
    block_on(auth.revoke_session(bob.id, bobs.session_id)).unwrap();
    assert!(matches!(
        block_on(auth.revoke_session(bob.id, bobs.session_id)),
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
        block_on(auth.authenticate(&tokens.access_token)),
        Err(AuthenticateError::SessionExpired)
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
use keys::{ApiKeyAuthError, CreateApiKeyError, RotateApiKeyError};
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
    async fn record_api_key_use(&self, uses: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), InfraError> {
        let mut state = self.0.lock().unwrap();
        for (id, at) in uses {
            if let Some(key) = state.keys.iter_mut().find(|k| k.id == *id) {
                key.last_used_at = Some(*at);
            }
        }
        Ok(())
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
        user.id,
        " Production API Key ",
        &scopes(&["agents:read", "chat:write"]),
        None,
    ))
    .unwrap();
    let key = created.key.expose_secret();
    assert_eq!(key.len(), 50);
    assert_eq!(created.record.prefix(), &key[..11]);
    assert_eq!(created.record.name, "Production API Key");
    let principal = block_on(auth.authenticate_api_key(key)).unwrap();
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
    let err =
        block_on(auth.create_api_key(user.id, "", &scopes(&["agents:read", "agents:admin"]), Some(past))).unwrap_err();
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
        block_on(auth.create_api_key(user.id, "k", &[], None)),
        Err(CreateApiKeyError::Invalid(_))
    ));
    assert!(matches!(
        block_on(auth.create_api_key(user.id, &"k".repeat(101), &scopes(&["chat:read"]), None)),
        Err(CreateApiKeyError::Invalid(_))
    ));
}

#[test]
fn revoked_expired_and_mistyped_keys_are_refused_distinctly() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let soon = world.clock.now() + Duration::minutes(1);
    let expiring = block_on(auth.create_api_key(user.id, "temp", &scopes(&["chat:read"]), Some(soon))).unwrap();
    let revoked = block_on(auth.create_api_key(user.id, "old", &scopes(&["chat:read"]), None)).unwrap();
    block_on(auth.revoke_api_key(user.id, revoked.record.id)).unwrap();
    assert!(matches!(
        block_on(auth.authenticate_api_key(revoked.key.expose_secret())),
        Err(ApiKeyAuthError::Revoked)
    ));
    world.advance(Duration::minutes(1));
    assert!(matches!(
        block_on(auth.authenticate_api_key(expiring.key.expose_secret())),
        Err(ApiKeyAuthError::Expired)
    ));
    let mut typo = expiring.key.expose_secret().to_owned();
    typo.replace_range(20..21, if &typo[20..21] == "a" { "b" } else { "a" });
    assert!(matches!(
        block_on(auth.authenticate_api_key(&typo)),
        Err(ApiKeyAuthError::Invalid)
    ));
    // A well-formed key with a valid checksum but an unknown secret.
    let forged = crate::api_key::GeneratedApiKey::generate(&CountingRng(AtomicU64::new(99)));
    assert!(matches!(
        block_on(auth.authenticate_api_key(forged.key.expose_secret())),
        Err(ApiKeyAuthError::Invalid)
    ));
}

#[test]
fn rotation_keeps_name_and_scopes_and_revokes_the_old_key() {
    let world = World::new();
    let auth = world.auth();
    let user = world.verified_user(&auth, "ada@example.com");
    let old = block_on(auth.create_api_key(user.id, "ci", &scopes(&["webhooks:read"]), None)).unwrap();
    world.advance(Duration::seconds(1));
    let new = block_on(auth.rotate_api_key(user.id, old.record.id, None)).unwrap();
    assert_ne!(new.record.id, old.record.id);
    assert_eq!((new.record.name.as_str(), new.record.scopes), ("ci", old.record.scopes));
    assert!(matches!(
        block_on(auth.authenticate_api_key(old.key.expose_secret())),
        Err(ApiKeyAuthError::Revoked)
    ));
    block_on(auth.authenticate_api_key(new.key.expose_secret())).unwrap();
    assert!(matches!(
        block_on(auth.rotate_api_key(user.id, old.record.id, None)),
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
    let key = block_on(auth.create_api_key(ada.id, "k", &scopes(&["chat:read"]), None)).unwrap();
    assert!(matches!(
        block_on(auth.api_key(bob.id, key.record.id)),
        Err(NotFoundError::NotFound)
    ));
    assert!(matches!(
        block_on(auth.revoke_api_key(bob.id, key.record.id)),
        Err(NotFoundError::NotFound)
    ));
    block_on(auth.admin_lock("ada@example.com")).unwrap();
    assert!(matches!(
        block_on(auth.authenticate_api_key(key.key.expose_secret())),
        Err(ApiKeyAuthError::Locked)
    ));
}
