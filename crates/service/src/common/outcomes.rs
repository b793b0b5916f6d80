//! Each use case's outcomes as problems: the one mapping from the domain's
//! error enums to codes and statuses, for the JSON API and the pages alike.

use super::problem::ApiError;
use actix_web::http::StatusCode;
use convosphere_domain::auth::account::{ConfirmEmailError, DeleteAccountError, EmailChangeError};
use convosphere_domain::auth::identities::UnlinkError;
use convosphere_domain::auth::keys::{CreateApiKeyError, RotateApiKeyError};
use convosphere_domain::auth::mfa::{BeginTotpError, ConfirmTotpError, DisableTotpError};
use convosphere_domain::auth::oauth::OAuthExchangeError;
use convosphere_domain::auth::passkeys::{AddPasskeyError, PasskeySignInError, RemovePasskeyError};
use convosphere_domain::auth::recent::{ReauthenticateError, RecentSignInRequired};
use convosphere_domain::auth::{
    AdminError, ChangePasswordError, LinkError, LoginError, NotFoundError, ProfileError, RefreshError,
    ResetPasswordError, SignupError,
};
use convosphere_domain::{AuthorizeError, CredentialError};

fn link_invalid() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "link_invalid",
        "this link is invalid, used or expired",
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "wrong e-mail or password")
}

fn account_locked() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "account_locked",
        "this account is locked; try again later or contact support",
    )
}

fn session_expired() -> ApiError {
    ApiError::unauthorized("session_expired", "the session has ended; log in again")
}

impl From<SignupError> for ApiError {
    fn from(e: SignupError) -> Self {
        match e {
            SignupError::Invalid(errors) => Self::validation(errors),
            SignupError::WeakPassword(reason) => Self::weak_password(reason, "password"),
            SignupError::Internal(cause) => cause.into(),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::LinkInvalid => link_invalid(),
            LinkError::Internal(cause) => cause.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => invalid_credentials(),
            LoginError::EmailNotVerified => Self::new(
                StatusCode::FORBIDDEN,
                "email_not_verified",
                "verify your e-mail address first: check your mailbox for the link",
            ),
            LoginError::Locked => account_locked(),
            LoginError::MfaRequired => Self::unauthorized(
                "mfa_required",
                "two-factor authentication is on: send totp_code (or a recovery_code)",
            ),
            LoginError::InvalidMfaCode => {
                Self::unauthorized("invalid_mfa_code", "the two-factor code is wrong or was used already")
            }
            LoginError::Internal(cause) => cause.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::InvalidToken => Self::unauthorized("invalid_token", "the refresh token is invalid"),
            RefreshError::SessionExpired => session_expired(),
            RefreshError::Locked => account_locked(),
            RefreshError::Internal(cause) => cause.into(),
        }
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::InvalidToken => Self::unauthorized("invalid_token", "the access token is invalid"),
            CredentialError::TokenExpired => Self::unauthorized("token_expired", "the access token has expired"),
            CredentialError::SessionExpired => session_expired(),
            CredentialError::InvalidApiKey => Self::unauthorized("invalid_api_key", "the API key is invalid"),
            CredentialError::ApiKeyExpired => Self::unauthorized("api_key_expired", "the API key has expired"),
            CredentialError::ApiKeyRevoked => Self::unauthorized("api_key_revoked", "the API key has been revoked"),
            CredentialError::Locked => account_locked(),
            CredentialError::TooManyFailures { retry_after } => Self::too_many(
                "too many failed credential checks from your network; wait and try again",
                retry_after,
            ),
            CredentialError::Internal(cause) => cause.into(),
        }
    }
}

impl From<AuthorizeError> for ApiError {
    fn from(e: AuthorizeError) -> Self {
        match e {
            AuthorizeError::Credential(e) => e.into(),
            AuthorizeError::RateLimited { budget, .. } => Self::rate_limited(&budget),
            AuthorizeError::InsufficientScope { missing, .. } => Self::insufficient_scope(missing.as_str()),
            AuthorizeError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ResetPasswordError> for ApiError {
    fn from(e: ResetPasswordError) -> Self {
        match e {
            ResetPasswordError::LinkInvalid => link_invalid(),
            ResetPasswordError::WeakPassword(reason) => Self::weak_password(reason, "password"),
            ResetPasswordError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ChangePasswordError> for ApiError {
    fn from(e: ChangePasswordError) -> Self {
        match e {
            ChangePasswordError::InvalidCredentials => {
                Self::unauthorized("invalid_credentials", "the current password is wrong")
            }
            ChangePasswordError::Locked => account_locked(),
            ChangePasswordError::WeakPassword(reason) => Self::weak_password(reason, "new_password"),
            ChangePasswordError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Invalid(errors) => Self::validation(errors),
            ProfileError::NotFound => Self::not_found(),
            ProfileError::Internal(cause) => cause.into(),
        }
    }
}

impl From<NotFoundError> for ApiError {
    fn from(e: NotFoundError) -> Self {
        match e {
            NotFoundError::NotFound => Self::not_found(),
            NotFoundError::Internal(cause) => cause.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::UnknownEmail(_) => Self::not_found(),
            AdminError::Internal(cause) => cause.into(),
        }
    }
}

impl From<BeginTotpError> for ApiError {
    fn from(e: BeginTotpError) -> Self {
        match e {
            BeginTotpError::AlreadyEnabled => Self::new(
                StatusCode::CONFLICT,
                "mfa_already_enabled",
                "two-factor authentication is already on; turn it off first to enrol another app",
            ),
            BeginTotpError::RecentSignInRequired(e) => e.into(),
            BeginTotpError::Internal(cause) => cause.into(),
        }
    }
}

impl From<RecentSignInRequired> for ApiError {
    fn from(_: RecentSignInRequired) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "reauthentication_required",
            "this action needs a recent sign-in: POST /v1/auth/reauthenticate with your password, then try again",
        )
    }
}

impl From<ReauthenticateError> for ApiError {
    fn from(e: ReauthenticateError) -> Self {
        match e {
            ReauthenticateError::Refused(refused) => refused.into(),
            ReauthenticateError::SessionExpired => session_expired(),
        }
    }
}

impl From<ConfirmTotpError> for ApiError {
    fn from(e: ConfirmTotpError) -> Self {
        match e {
            ConfirmTotpError::NotPending => Self::new(
                StatusCode::CONFLICT,
                "mfa_not_pending",
                "no two-factor setup is pending: start one with POST /v1/me/mfa/totp",
            ),
            ConfirmTotpError::InvalidCode => {
                Self::unauthorized("invalid_mfa_code", "the code does not match the new secret")
            }
            ConfirmTotpError::Internal(cause) => cause.into(),
        }
    }
}

impl From<DisableTotpError> for ApiError {
    fn from(e: DisableTotpError) -> Self {
        match e {
            DisableTotpError::InvalidCredentials => invalid_credentials(),
            DisableTotpError::Locked => account_locked(),
            DisableTotpError::Internal(cause) => cause.into(),
        }
    }
}

fn passkey_failed() -> ApiError {
    ApiError::unauthorized(
        "passkey_failed",
        "the passkey could not be verified, or the challenge is unknown, used or expired: start again",
    )
}

impl From<AddPasskeyError> for ApiError {
    fn from(e: AddPasskeyError) -> Self {
        match e {
            AddPasskeyError::Invalid(errors) => Self::validation(errors),
            AddPasskeyError::Refused(_) => passkey_failed(),
            AddPasskeyError::RecentSignInRequired(e) => e.into(),
            AddPasskeyError::Internal(cause) => cause.into(),
        }
    }
}

impl From<RemovePasskeyError> for ApiError {
    fn from(e: RemovePasskeyError) -> Self {
        match e {
            RemovePasskeyError::NotFound => Self::not_found(),
            RemovePasskeyError::LastWayIn => Self::validation(vec![convosphere_domain::FieldError::new(
                "id",
                "last_way_in",
                "this passkey is the account's only way to sign in: set a password or add another passkey first",
            )]),
            RemovePasskeyError::RecentSignInRequired(e) => e.into(),
            RemovePasskeyError::Internal(cause) => cause.into(),
        }
    }
}

impl From<PasskeySignInError> for ApiError {
    fn from(e: PasskeySignInError) -> Self {
        match e {
            PasskeySignInError::Refused(_) => passkey_failed(),
            PasskeySignInError::Locked => account_locked(),
            PasskeySignInError::EmailNotVerified => LoginError::EmailNotVerified.into(),
            PasskeySignInError::SessionExpired => session_expired(),
            PasskeySignInError::Internal(cause) => cause.into(),
        }
    }
}

impl From<EmailChangeError> for ApiError {
    fn from(e: EmailChangeError) -> Self {
        match e {
            EmailChangeError::Invalid(errors) => Self::validation(errors),
            EmailChangeError::RecentSignInRequired(e) => e.into(),
            EmailChangeError::Internal(cause) => cause.into(),
        }
    }
}

impl From<ConfirmEmailError> for ApiError {
    fn from(e: ConfirmEmailError) -> Self {
        match e {
            ConfirmEmailError::LinkInvalid => link_invalid(),
            ConfirmEmailError::Internal(cause) => cause.into(),
        }
    }
}

impl From<DeleteAccountError> for ApiError {
    fn from(e: DeleteAccountError) -> Self {
        match e {
            DeleteAccountError::PasswordRequired => Self::validation(vec![convosphere_domain::FieldError::new(
                "password",
                "required",
                "password is required",
            )]),
            DeleteAccountError::InvalidCredentials => invalid_credentials(),
            DeleteAccountError::Locked => account_locked(),
            DeleteAccountError::RecentSignInRequired(e) => e.into(),
            DeleteAccountError::Internal(cause) => cause.into(),
        }
    }
}

impl From<OAuthExchangeError> for ApiError {
    fn from(e: OAuthExchangeError) -> Self {
        match e {
            OAuthExchangeError::Failed => ApiError::oauth_failed("the code is unknown, used or expired"),
            OAuthExchangeError::Locked => {
                ApiError::new(StatusCode::FORBIDDEN, "account_locked", "this account is locked")
            }
            OAuthExchangeError::MfaRequired => LoginError::MfaRequired.into(),
            OAuthExchangeError::InvalidMfaCode => LoginError::InvalidMfaCode.into(),
            OAuthExchangeError::Internal(cause) => cause.into(),
        }
    }
}

impl From<UnlinkError> for ApiError {
    fn from(e: UnlinkError) -> Self {
        match e {
            UnlinkError::NotFound => ApiError::not_found(),
            UnlinkError::LastWayIn => ApiError::validation(vec![convosphere_domain::FieldError::new(
                "provider",
                "last_way_in",
                "this is the account's only way to sign in: set a password or link another provider first",
            )]),
            UnlinkError::RecentSignInRequired(e) => e.into(),
            UnlinkError::Internal(cause) => cause.into(),
        }
    }
}

impl From<CreateApiKeyError> for ApiError {
    fn from(e: CreateApiKeyError) -> Self {
        match e {
            CreateApiKeyError::Invalid(errors) => ApiError::validation(errors),
            CreateApiKeyError::RecentSignInRequired(e) => e.into(),
            CreateApiKeyError::Internal(cause) => cause.into(),
        }
    }
}

impl From<RotateApiKeyError> for ApiError {
    fn from(e: RotateApiKeyError) -> Self {
        match e {
            RotateApiKeyError::NotFound => ApiError::not_found(),
            RotateApiKeyError::Invalid(errors) => ApiError::validation(errors),
            RotateApiKeyError::RecentSignInRequired(e) => e.into(),
            RotateApiKeyError::Internal(cause) => cause.into(),
        }
    }
}
