//! The tables, as diesel sees them. One schema serves both backends: the two
//! migration histories declare the same column types (see the crate docs).
//!
//! To add a table: write its migration once in `migrations/shared`, or, where
//! the dialects differ, in both `migrations/sqlite` and `migrations/postgres`;
//! add its `table!` here, its `joinable!` lines, and its name to
//! `allow_tables_to_appear_in_same_query!`.

diesel::table! {
    /// Accounts.
    users (id) {
        /// UUID, as text.
        id -> Text,
        /// Display name.
        name -> Text,
        /// Trimmed and lower-cased; unique (`users_email_key`).
        email -> Text,
        /// Whether the address was proved.
        email_verified -> Bool,
        /// PHC string; NULL for OAuth-only accounts.
        password_hash -> Nullable<Text>,
        /// Optional profile field.
        company -> Nullable<Text>,
        /// Optional profile field.
        country -> Nullable<Text>,
        /// Optional profile field.
        phone -> Nullable<Text>,
        /// `free`, `starter`, `business` or `pro`.
        plan -> Text,
        /// Whether TOTP is on.
        mfa_enabled -> Bool,
        /// Suspended by an operator.
        suspended -> Bool,
        /// Consecutive failed password checks.
        failed_logins -> Integer,
        /// Failed-login lockout end (UTC).
        locked_until -> Nullable<Timestamp>,
        /// Creation time (UTC).
        created_at -> Timestamp,
        /// Last change (UTC).
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Login sessions.
    sessions (id) {
        /// UUID, as text.
        id -> Text,
        /// Owner.
        user_id -> Text,
        /// Login time (UTC).
        created_at -> Timestamp,
        /// Last use (UTC).
        last_active_at -> Timestamp,
        /// Absolute end (UTC).
        expires_at -> Timestamp,
        /// When it was ended (UTC).
        ended_at -> Nullable<Timestamp>,
        /// Why it was ended (`EndReason::as_str`).
        end_reason -> Nullable<Text>,
        /// Client IP at login.
        ip -> Nullable<Text>,
        /// Client `User-Agent` at login.
        user_agent -> Nullable<Text>,
        /// Last sign-in or re-authentication (UTC).
        auth_time -> Timestamp,
        /// How it was made: RFC 8176 names, space-separated.
        amr -> Text,
    }
}

diesel::table! {
    /// Refresh tokens of sessions, by hash; a used one stays as a reuse tripwire.
    refresh_tokens (hash) {
        /// Lower-case hex SHA-256 of the token.
        hash -> Text,
        /// The session it refreshes.
        session_id -> Text,
        /// Issue time (UTC).
        created_at -> Timestamp,
        /// When it was traded for its replacement (UTC).
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// E-mailed single-use tokens (verification, password reset), by hash.
    one_time_tokens (hash) {
        /// Lower-case hex SHA-256 of the token.
        hash -> Text,
        /// Owner.
        user_id -> Text,
        /// `TokenKind::as_str`.
        kind -> Text,
        /// Issue time (UTC).
        created_at -> Timestamp,
        /// End of validity (UTC).
        expires_at -> Timestamp,
        /// When it was used (UTC).
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// API keys; only a hash of the secret is kept.
    api_keys (id) {
        /// UUID, as text.
        id -> Text,
        /// Owner.
        user_id -> Text,
        /// A name for people.
        name -> Text,
        /// The 8 characters after `cs_`; unique (`api_keys_public_id_key`).
        public_id -> Text,
        /// Lower-case hex SHA-256 of the secret part.
        secret_hash -> Text,
        /// Space-separated scopes (`ScopeSet`'s `Display`).
        scopes -> Text,
        /// Creation time (UTC).
        created_at -> Timestamp,
        /// When it stops working (UTC).
        expires_at -> Nullable<Timestamp>,
        /// Last use (UTC), written in batches.
        last_used_at -> Nullable<Timestamp>,
        /// When it was revoked or rotated away (UTC).
        revoked_at -> Nullable<Timestamp>,
        /// The client IP of the last use.
        last_used_ip -> Nullable<Text>,
        /// The `User-Agent` of the last use.
        last_used_user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    /// The invalidation feed: what caches must forget, in commit order.
    invalidations (id) {
        /// `BIGSERIAL` / `INTEGER PRIMARY KEY AUTOINCREMENT`: the feed's cursor.
        id -> BigInt,
        /// `session`, `user` or `api_key`.
        kind -> Text,
        /// A session id, a user id, or an API key's public id.
        subject -> Text,
        /// When the row was written (UTC, the writer's clock), for purging.
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// TOTP enrolments, one per user.
    totp_secrets (user_id) {
        /// Owner (UUID text).
        user_id -> Text,
        /// The secret sealed by the `SecretBox`.
        sealed_secret -> Text,
        /// Whether 2FA is on.
        confirmed -> Bool,
        /// The last accepted TOTP step.
        last_step -> Nullable<BigInt>,
        /// Setup time (UTC).
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Single-use recovery codes, by hash.
    recovery_codes (hash) {
        /// Lower-case hex SHA-256 of the normalized code.
        hash -> Text,
        /// Owner.
        user_id -> Text,
        /// Issue time (UTC).
        created_at -> Timestamp,
        /// When it was used (UTC).
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The audit trail.
    security_events (id) {
        /// Time-ordered UUID text.
        id -> Text,
        /// The account.
        user_id -> Text,
        /// `EventKind::as_str`.
        kind -> Text,
        /// When (UTC).
        at -> Timestamp,
        /// Client IP.
        ip -> Nullable<Text>,
        /// Client `User-Agent`.
        user_agent -> Nullable<Text>,
        /// A JSON array of `[key, value]` string pairs.
        details -> Text,
    }
}

diesel::table! {
    /// Provider identities linked to accounts.
    oauth_identities (provider, subject) {
        /// `google`, `github` or `facebook`.
        provider -> Text,
        /// The provider's stable id of the person.
        subject -> Text,
        /// The account.
        user_id -> Text,
        /// The verified address it was linked with.
        email -> Text,
        /// When it was linked (UTC).
        created_at -> Timestamp,
        /// When a login last used it (UTC).
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// OAuth authorizations in flight, by the hash of `state`.
    oauth_pending_logins (state_hash) {
        /// Lower-case hex SHA-256 of `state`.
        state_hash -> Text,
        /// `google`, `github` or `facebook`.
        provider -> Text,
        /// Lower-case hex SHA-256 of the browser-binding cookie.
        browser_hash -> Text,
        /// The PKCE verifier, sealed by the `SecretBox`.
        sealed_verifier -> Text,
        /// The OIDC nonce.
        nonce -> Text,
        /// Where to send the browser afterwards.
        redirect_to -> Nullable<Text>,
        /// Start time (UTC).
        created_at -> Timestamp,
        /// End of validity (UTC).
        expires_at -> Timestamp,
        /// The account a link is for (NULL: a login).
        link_user_id -> Nullable<Text>,
        /// The session that asked for the link.
        link_session_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// One-time codes of finished OAuth logins, by hash.
    oauth_login_codes (hash) {
        /// Lower-case hex SHA-256 of the code.
        hash -> Text,
        /// The account.
        user_id -> Text,
        /// The provider it logged in with.
        provider -> Text,
        /// Issue time (UTC).
        created_at -> Timestamp,
        /// End of validity (UTC).
        expires_at -> Timestamp,
        /// When it was used (UTC).
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::table! {
    /// Logins refused for an address without an account (never the address).
    unknown_login_attempts (id) {
        /// `BIGSERIAL` / `INTEGER PRIMARY KEY AUTOINCREMENT`.
        id -> BigInt,
        /// When (UTC).
        at -> Timestamp,
        /// Client IP.
        ip -> Nullable<Text>,
        /// Client `User-Agent`.
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    /// What the gateway answered, by hour (UTC): a key's, or with
    /// `api_key_id` '' the whole account's.
    usage_hourly (user_id, api_key_id, hour) {
        /// The account.
        user_id -> Text,
        /// The key, or '' for the whole account.
        api_key_id -> Text,
        /// The start of the bucket.
        hour -> Timestamp,
        /// Let through.
        allowed -> BigInt,
        /// Refused with `rate_limited`.
        rate_limited -> BigInt,
        /// Refused with `insufficient_scope`.
        insufficient_scope -> BigInt,
        /// The busiest minute (of one instance).
        peak_per_minute -> BigInt,
    }
}

diesel::table! {
    /// What the gateway answered, by day (UTC): a key's, or with
    /// `api_key_id` '' the whole account's.
    usage_daily (user_id, api_key_id, day) {
        /// The account.
        user_id -> Text,
        /// The key, or '' for the whole account.
        api_key_id -> Text,
        /// The start of the bucket.
        day -> Timestamp,
        /// Let through.
        allowed -> BigInt,
        /// Refused with `rate_limited`.
        rate_limited -> BigInt,
        /// Refused with `insufficient_scope`.
        insufficient_scope -> BigInt,
        /// The busiest minute (of one instance).
        peak_per_minute -> BigInt,
    }
}

diesel::table! {
    /// The client networks each key was used from lately.
    key_networks (api_key_id, network) {
        /// The key.
        api_key_id -> Text,
        /// `203.0.113.0/24`, `2001:db8:7::/48`.
        network -> Text,
        /// First use from it.
        first_seen -> Timestamp,
        /// Latest use from it (as the instances noted it).
        last_seen -> Timestamp,
    }
}

diesel::table! {
    /// The e-mails about unusual use sent: one per key, kind and day.
    usage_alerts (api_key_id, kind, day) {
        /// The key.
        api_key_id -> Text,
        /// The event kind.
        kind -> Text,
        /// The day (UTC midnight).
        day -> Timestamp,
    }
}

diesel::joinable!(totp_secrets -> users (user_id));
diesel::table! {
    /// The passkeys of accounts (WebAuthn credentials).
    passkeys (id) {
        /// UUIDv7.
        id -> Text,
        /// The account.
        user_id -> Text,
        /// What its owner called it.
        name -> Text,
        /// The authenticator's credential id, base64url; unique.
        credential_id -> Text,
        /// The public key and flags, as the verifier serialises them.
        credential -> Text,
        /// The last signature counter seen.
        sign_count -> BigInt,
        /// Whether the authenticator said it is backed up.
        backed_up -> Bool,
        /// When it was registered (UTC).
        created_at -> Timestamp,
        /// When it last signed in (UTC).
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Passkey ceremonies in flight, by the hash of the challenge id.
    passkey_challenges (id_hash) {
        /// Lower-case hex SHA-256 of the challenge id.
        id_hash -> Text,
        /// `registration` or `sign_in`.
        purpose -> Text,
        /// The account a registration is for.
        user_id -> Nullable<Text>,
        /// The verifier's state of the ceremony.
        state -> Text,
        /// End of validity (UTC).
        expires_at -> Timestamp,
    }
}

diesel::table! {
    /// Changes of address waiting for the link mailed to the new address.
    email_changes (hash) {
        /// Lower-case hex SHA-256 of the token.
        hash -> Text,
        /// The account.
        user_id -> Text,
        /// The address asked for.
        new_email -> Text,
        /// The session that asked (it stays signed in).
        session_id -> Nullable<Text>,
        /// When it was asked (UTC).
        created_at -> Timestamp,
        /// End of validity (UTC).
        expires_at -> Timestamp,
        /// When its link was used (UTC).
        used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(email_changes -> users (user_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(security_events -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(one_time_tokens -> users (user_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(oauth_identities -> users (user_id));
diesel::joinable!(oauth_login_codes -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    email_changes,
    sessions,
    refresh_tokens,
    one_time_tokens,
    api_keys,
    invalidations,
    totp_secrets,
    recovery_codes,
    security_events,
    unknown_login_attempts,
    usage_hourly,
    usage_daily,
    key_networks,
    usage_alerts,
    oauth_identities,
    oauth_pending_logins,
    oauth_login_codes,
    passkeys,
    passkey_challenges
);
