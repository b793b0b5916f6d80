//! The account's own life: changing its e-mail address (confirmed by a link
//! to the new one) and deleting it (GDPR article 17), by its owner or by an
//! operator.

use super::{AdminError, Auth, PasswordCheck, Principal, RecentSignInRequired};
use crate::account::{EmailChangeOutcome, EmailChangeRequest, PendingEmailChange};
use crate::event::{ClientContext, EventKind};
use crate::ports::{AccountRepository, Invalidation, Mail, Mailer, PasswordHasher, RateLimiter, Store, TokenSigner};
use crate::{Email, FieldError, InfraError, OpaqueToken, User};

/// Outcomes of [`Auth::request_email_change`].
#[derive(Debug, thiserror::Error)]
pub enum EmailChangeError {
    /// The address is not one, or is the account's own already.
    #[error("invalid address")]
    Invalid(Vec<FieldError>),
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::confirm_email_change`].
#[derive(Debug, thiserror::Error)]
pub enum ConfirmEmailError {
    /// The link is unknown, used, expired or replaced, or the address was
    /// taken by another account meanwhile.
    #[error("the link is invalid, used or expired")]
    LinkInvalid,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::delete_account`].
#[derive(Debug, thiserror::Error)]
pub enum DeleteAccountError {
    /// The account has a password and none was given.
    #[error("the password is required")]
    PasswordRequired,
    /// The password is wrong (counted toward the lockout).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The account is locked out: no password is checked until it ends.
    #[error("the account is locked")]
    Locked,
    /// An account without a password, and a session whose last sign-in is
    /// too long ago.
    #[error(transparent)]
    RecentSignInRequired(#[from] RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + AccountRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
    L: RateLimiter,
{
    /// Asks to change the principal's address to `email`, a sensitive
    /// action. The new address is sent a link; the current one a notice.
    /// The answer is the same when another account has the address: that
    /// account is sent a notice instead of a link, and nothing is stored.
    /// Nothing changes until the link is used.
    pub async fn request_email_change(
        &self,
        principal: &Principal,
        email: &str,
        client: &ClientContext,
    ) -> Result<(), EmailChangeError> {
        self.require_recent_sign_in(principal)?;
        let user = &principal.user;
        let new_email = Email::parse(email)
            .map_err(|e| EmailChangeError::Invalid(vec![FieldError::new("email", e.code(), e.to_string())]))?;
        if new_email == user.email {
            let same = FieldError::new("email", "unchanged", "this is the account's address already");
            return Err(EmailChangeError::Invalid(vec![same]));
        }
        if !self.mailbox_has_room(user.id).await? {
            // As for other links: the newest one sent stays the one that works.
            return Ok(());
        }
        let base = &self.config.public_url;
        match self.store.user_by_email(&new_email).await? {
            Some(owner) => {
                if self.mailbox_has_room(owner.id).await? {
                    self.mailer
                        .send(Mail::EmailChangeAttempt {
                            to: owner.email,
                            name: owner.name,
                            login_link: format!("{base}/login"),
                        })
                        .await?;
                }
            }
            None => {
                let now = self.clock.now();
                let token = OpaqueToken::generate(&*self.rng);
                let request = EmailChangeRequest {
                    user: user.id,
                    new_email: new_email.clone(),
                    token: token.hash(),
                    session: Some(principal.session_id),
                    created_at: now,
                    expires_at: now + self.config.email_change_ttl,
                };
                self.store.request_email_change(&request).await?;
                self.mailer
                    .send(Mail::ConfirmEmailChange {
                        to: new_email.clone(),
                        name: user.name.clone(),
                        link: self.link("/confirm-email", &token),
                    })
                    .await?;
            }
        }
        self.mailer
            .send(Mail::EmailChangeRequested {
                to: user.email.clone(),
                name: user.name.clone(),
                new_email: new_email.clone(),
                forgot_link: format!("{base}/forgot-password"),
            })
            .await?;
        let details = [("from", user.email.as_str()), ("to", new_email.as_str())];
        self.record(user.id, EventKind::EmailChangeRequested, client, &details)
            .await?;
        Ok(())
    }

    /// The principal's change of address waiting for its link, if any.
    pub async fn pending_email_change(&self, user: &User) -> Result<Option<PendingEmailChange>, InfraError> {
        self.store.pending_email_change(user.id, self.clock.now()).await
    }

    /// Confirms a change of address with the token of its link: the
    /// address changes (and counts as verified), the links sent to the old
    /// one die, and every session but the one that asked ends.
    pub async fn confirm_email_change(&self, token: &str, client: &ClientContext) -> Result<User, ConfirmEmailError> {
        let hash = OpaqueToken::presented(token).hash();
        match self.store.confirm_email_change(&hash, self.clock.now()).await? {
            EmailChangeOutcome::Invalid | EmailChangeOutcome::Taken => Err(ConfirmEmailError::LinkInvalid),
            EmailChangeOutcome::Changed { user, old_email, ended } => {
                self.forget(Invalidation::User(user.id));
                self.forget_sessions(&ended);
                let details = [("from", old_email.as_str()), ("to", user.email.as_str())];
                self.record(user.id, EventKind::EmailChanged, client, &details).await?;
                Ok(*user)
            }
        }
    }

    /// Deletes the principal's account. An account with a password needs
    /// it (a wrong one counts toward the lockout, and the right one is the
    /// recent sign-in); one without needs a recent sign-in. See
    /// [`AccountRepository::delete_account`] for what goes and what stays.
    pub async fn delete_account(
        &self,
        principal: &Principal,
        password: Option<&str>,
        client: &ClientContext,
    ) -> Result<(), DeleteAccountError> {
        let user = &principal.user;
        if user.password_hash.is_some() {
            let password = password.ok_or(DeleteAccountError::PasswordRequired)?;
            match self
                .confirm_password(user, password, "account_deletion", client)
                .await?
            {
                PasswordCheck::Right => {}
                PasswordCheck::Wrong => return Err(DeleteAccountError::InvalidCredentials),
                PasswordCheck::Locked => return Err(DeleteAccountError::Locked),
            }
        } else {
            self.require_recent_sign_in(principal)?;
        }
        self.erase(user, "owner").await?;
        Ok(())
    }

    /// Operator: deletes an account as its owner can.
    pub async fn admin_delete(&self, email: &str) -> Result<User, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        if !self.erase(&user, "operator").await? {
            return Err(AdminError::UnknownEmail(email.to_owned()));
        }
        Ok(user)
    }

    /// Deletes `user`'s account, tells every cache, and mails the address
    /// it had; false if a parallel deletion got there first.
    async fn erase(&self, user: &User, by: &str) -> Result<bool, InfraError> {
        // The event of the deletion carries no client: nothing personal stays.
        let event = self.event(
            user.id,
            EventKind::AccountDeleted,
            &ClientContext::operator(),
            &[("by", by)],
        );
        let Some(deleted) = self.store.delete_account(user.id, &event).await? else {
            return Ok(false);
        };
        self.forget(Invalidation::User(user.id));
        self.forget_sessions(&deleted.sessions);
        for key in deleted.api_keys {
            self.forget(Invalidation::ApiKey(key));
        }
        self.mailer
            .send(Mail::AccountDeleted {
                to: user.email.clone(),
                name: user.name.clone(),
                signup_link: format!("{}/signup", self.config.public_url),
            })
            .await?;
        Ok(true)
    }
}
