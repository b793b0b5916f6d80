//! [`PasskeyRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::error::StoreError;
use crate::models::{db_time, session_ids, user_id};
use crate::schema::{oauth_identities, passkey_challenges, passkeys};
use crate::sessions::{store_session, OpenedSession};
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::passkey::{
    ChallengePurpose, CredentialId, Passkey, PendingChallenge, RemoveOutcome, StoredCredential, VerifiedAssertion,
};
use convosphere_domain::ports::{NewSession, PasskeyRepository};
use convosphere_domain::{InfraError, PasskeyId, SessionId, TokenHash, UserId};
use diesel::prelude::*;

/// A row of `passkeys`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = passkeys, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
struct PasskeyRow {
    id: String,
    user_id: String,
    name: String,
    credential_id: String,
    credential: String,
    sign_count: i64,
    backed_up: bool,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
}

impl PasskeyRow {
    fn new(passkey: &Passkey) -> Self {
        Self {
            id: passkey.id.to_string(),
            user_id: passkey.user_id.to_string(),
            name: passkey.name.clone(),
            credential_id: passkey.credential_id.to_base64url(),
            credential: passkey.credential.0.clone(),
            sign_count: i64::from(passkey.sign_count),
            backed_up: passkey.backed_up,
            created_at: db_time(passkey.created_at),
            last_used_at: passkey.last_used_at.map(db_time),
        }
    }
}

impl TryFrom<PasskeyRow> for Passkey {
    type Error = StoreError;

    fn try_from(row: PasskeyRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::corrupt(format_args!("passkeys.{what} of {}", row.id));
        Ok(Self {
            id: row.id.parse().map_err(|_| corrupt("id"))?,
            user_id: user_id(&row.user_id)?,
            credential_id: CredentialId::from_base64url(&row.credential_id).ok_or_else(|| corrupt("credential_id"))?,
            sign_count: u32::try_from(row.sign_count).map_err(|_| corrupt("sign_count"))?,
            name: row.name,
            credential: StoredCredential(row.credential),
            backed_up: row.backed_up,
            created_at: row.created_at.and_utc(),
            last_used_at: row.last_used_at.map(|at| at.and_utc()),
        })
    }
}

/// A row of `passkey_challenges`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = passkey_challenges, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
struct ChallengeRow {
    id_hash: String,
    purpose: String,
    user_id: Option<String>,
    state: String,
    expires_at: NaiveDateTime,
}

const REGISTRATION: &str = "registration";
const SIGN_IN: &str = "sign_in";

impl ChallengeRow {
    fn new(challenge: &PendingChallenge) -> Self {
        let (purpose, user) = match challenge.purpose {
            ChallengePurpose::Registration(user) => (REGISTRATION, Some(user.to_string())),
            ChallengePurpose::SignIn => (SIGN_IN, None),
        };
        Self {
            id_hash: challenge.id.to_hex(),
            purpose: purpose.to_owned(),
            user_id: user,
            state: challenge.state.clone(),
            expires_at: db_time(challenge.expires_at),
        }
    }

    fn into_challenge(self, id: TokenHash) -> Result<PendingChallenge, StoreError> {
        let purpose = match (self.purpose.as_str(), self.user_id.as_deref()) {
            (REGISTRATION, Some(user)) => ChallengePurpose::Registration(user_id(user)?),
            (SIGN_IN, None) => ChallengePurpose::SignIn,
            (other, _) => {
                return Err(StoreError::corrupt(format_args!(
                    "passkey_challenges.purpose {other:?}"
                )))
            }
        };
        Ok(PendingChallenge {
            id,
            purpose,
            state: self.state,
            expires_at: self.expires_at.and_utc(),
        })
    }
}

/// A verified use of a passkey to note.
struct NotedUse {
    id: String,
    count: i64,
    credential: String,
    backed_up: bool,
    at: NaiveDateTime,
}

impl NotedUse {
    fn new(id: PasskeyId, assertion: &VerifiedAssertion, at: DateTime<Utc>) -> Self {
        Self {
            id: id.to_string(),
            count: i64::from(assertion.sign_count),
            credential: assertion.credential.0.clone(),
            backed_up: assertion.backed_up,
            at: db_time(at),
        }
    }
}

/// Notes a [`NotedUse`]: the rows changed (0 or 1). The counter only
/// grows: of two parallel sign-ins that both verified against the same
/// stored counter, the one with the lower counter finds it raised and
/// changes nothing. A macro, as the connection type differs per backend.
macro_rules! note_use {
    ($conn:expr, $noted:expr) => {{
        let noted = &$noted;
        diesel::update(
            passkeys::table
                .find(&noted.id)
                // "Above the stored one, or both 0" (an authenticator without a counter).
                .filter(
                    passkeys::sign_count
                        .lt(noted.count)
                        .or(passkeys::sign_count.eq(0).and(passkeys::sign_count.eq(noted.count))),
                ),
        )
        .set((
            passkeys::credential.eq(&noted.credential),
            passkeys::sign_count.eq(noted.count),
            passkeys::backed_up.eq(noted.backed_up),
            passkeys::last_used_at.eq(Some(noted.at)),
        ))
        .execute($conn)?
    }};
}

impl PasskeyRepository for Store {
    async fn save_passkey_challenge(&self, challenge: &PendingChallenge) -> Result<(), InfraError> {
        let row = ChallengeRow::new(challenge);
        with_conn!(self, |conn| conn.write(|conn| {
            diesel::insert_into(passkey_challenges::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn passkey_challenge(
        &self,
        id: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingChallenge>, InfraError> {
        let (hash, now) = (id.to_hex(), db_time(now));
        let row = with_conn!(self, |conn| {
            Ok(passkey_challenges::table
                .find(hash)
                .filter(passkey_challenges::expires_at.gt(now))
                .select(ChallengeRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        Ok(row.map(|row| row.into_challenge(*id)).transpose()?)
    }

    async fn take_passkey_challenge(
        &self,
        id: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingChallenge>, InfraError> {
        let (hash, now) = (id.to_hex(), db_time(now));
        let row = with_conn!(self, |conn| conn.write(|conn| {
            // One DELETE … RETURNING: of parallel takers exactly one deletes
            // the row, and only that one gets it back. An expired row is
            // deleted too, and answers nothing.
            Ok(diesel::delete(passkey_challenges::table.find(hash))
                .returning(ChallengeRow::as_returning())
                .get_result(conn)
                .optional()?)
        }))?;
        let live = row.filter(|row| row.expires_at > now);
        Ok(live.map(|row| row.into_challenge(*id)).transpose()?)
    }

    async fn add_passkey(&self, passkey: &Passkey) -> Result<bool, InfraError> {
        let row = PasskeyRow::new(passkey);
        let inserted = with_conn!(self, |conn| conn.write_transaction(|conn| {
            // Under the account's lock, like every change of its ways in.
            conn.lock_user(&row.user_id)?;
            Ok(diesel::insert_into(passkeys::table)
                .values(&row)
                .on_conflict_do_nothing()
                .execute(conn)?)
        }))?;
        Ok(inserted == 1)
    }

    async fn passkeys(&self, user: UserId) -> Result<Vec<Passkey>, InfraError> {
        let user = user.to_string();
        let rows: Vec<PasskeyRow> = with_conn!(self, |conn| {
            Ok(passkeys::table
                .filter(passkeys::user_id.eq(user))
                .order((passkeys::created_at, passkeys::id))
                .select(PasskeyRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(Passkey::try_from)
            .collect::<Result<_, _>>()
            .map_err(InfraError::from)
    }

    async fn passkey_by_credential(&self, credential: &CredentialId) -> Result<Option<Passkey>, InfraError> {
        let credential = credential.to_base64url();
        let row: Option<PasskeyRow> = with_conn!(self, |conn| {
            Ok(passkeys::table
                .filter(passkeys::credential_id.eq(credential))
                .select(PasskeyRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        Ok(row.map(Passkey::try_from).transpose()?)
    }

    async fn note_passkey_use(
        &self,
        id: PasskeyId,
        assertion: &VerifiedAssertion,
        at: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let noted = NotedUse::new(id, assertion, at);
        let updated = with_conn!(self, |conn| conn.write(|conn| Ok(note_use!(conn, noted))))?;
        Ok(updated == 1)
    }

    async fn sign_in_with_passkey(
        &self,
        challenge: &TokenHash,
        id: PasskeyId,
        assertion: &VerifiedAssertion,
        new: &NewSession<'_>,
    ) -> Result<Option<Vec<SessionId>>, InfraError> {
        let opened = OpenedSession::new(new);
        let noted = NotedUse::new(id, assertion, new.session.created_at);
        let hash = challenge.to_hex();
        let ended = with_conn!(self, |conn| conn.write_transaction(|conn| {
            // The account's lock first, as every change of its ways in
            // takes it (a removal of this passkey waits, or is waited for),
            // and as opening a session needs it.
            conn.lock_user(&opened.row.user_id)?;
            // Of parallel finishes with one challenge, one deletes the row.
            let taken = diesel::delete(
                passkey_challenges::table
                    .find(&hash)
                    .filter(passkey_challenges::expires_at.gt(noted.at)),
            )
            .execute(conn)?;
            if taken == 0 {
                return Ok(None);
            }
            // The challenge stays used when the counter is refused.
            if note_use!(conn, noted) == 0 {
                return Ok(None);
            }
            Ok(Some(store_session!(conn, opened)))
        }))?;
        Ok(ended.map(session_ids).transpose()?)
    }

    async fn remove_passkey(&self, user: UserId, id: PasskeyId) -> Result<RemoveOutcome, InfraError> {
        let (user, id) = (user.to_string(), id.to_string());
        let outcome = with_conn!(self, |conn| conn.write_transaction(|conn| {
            // Under the account's lock: two removals (or a removal and an
            // unlink) at once are counted one after the other.
            let Some(account) = conn.lock_user(&user)? else {
                return Ok(RemoveOutcome::NotFound);
            };
            let owned: Vec<String> = passkeys::table
                .filter(passkeys::user_id.eq(&user))
                .select(passkeys::id)
                .load(conn)?;
            if !owned.contains(&id) {
                return Ok(RemoveOutcome::NotFound);
            }
            let identities: i64 = oauth_identities::table
                .filter(oauth_identities::user_id.eq(&user))
                .count()
                .get_result(conn)?;
            if account.password_hash.is_none() && identities == 0 && owned.len() <= 1 {
                return Ok(RemoveOutcome::LastWayIn);
            }
            diesel::delete(passkeys::table.find(&id)).execute(conn)?;
            Ok(RemoveOutcome::Removed)
        }))?;
        Ok(outcome)
    }
}
