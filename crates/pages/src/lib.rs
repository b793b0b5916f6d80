#![doc = include_str!("../README.md")]

mod account;
mod account_settings;
mod assets;
mod dashboard;
mod error;
mod form;
mod keys;
mod layout;
mod login;
mod passkeys;
mod providers;
mod reauth;
mod security;
pub mod session;
mod sessions;
mod usage;

use actix_web::middleware::from_fn;
use actix_web::web;

/// Registers every page and the embedded assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let page = |path: &str| web::resource(path).wrap(from_fn(session::page_middleware));
    cfg.service(page("/").route(web::get().to(dashboard::root)))
        .service(
            page("/signup")
                .route(web::get().to(account::signup_form))
                .route(web::post().to(account::signup)),
        )
        .service(
            page("/login")
                .route(web::get().to(login::login_form))
                .route(web::post().to(login::login)),
        )
        .service(
            page("/login/two-factor")
                .route(web::get().to(login::login_mfa_form))
                .route(web::post().to(login::login_mfa)),
        )
        .service(page("/login/passkey/start").route(web::post().to(passkeys::sign_in_start)))
        .service(page("/login/passkey").route(web::post().to(passkeys::sign_in)))
        .service(page("/logout").route(web::post().to(login::logout)))
        .service(
            page("/forgot-password")
                .route(web::get().to(account::forgot_form))
                .route(web::post().to(account::forgot)),
        )
        .service(
            page("/reset-password")
                .route(web::get().to(account::reset_form))
                .route(web::post().to(account::reset)),
        )
        .service(
            page("/verify-email")
                .route(web::get().to(account::verify_form))
                .route(web::post().to(account::verify)),
        )
        .service(page("/verify-email/resend").route(web::post().to(account::resend)))
        .service(page("/dashboard").route(web::get().to(dashboard::show)))
        .service(page("/dashboard/profile").route(web::post().to(dashboard::update_profile)))
        .service(page("/settings/account").route(web::get().to(account_settings::show)))
        .service(page("/settings/account/email").route(web::post().to(account_settings::change_email)))
        .service(page("/settings/account/delete").route(web::post().to(account_settings::delete)))
        .service(page("/settings/account/export").route(web::get().to(dashboard::export)))
        .service(
            page("/confirm-email")
                .route(web::get().to(account_settings::confirm_form))
                .route(web::post().to(account_settings::confirm)),
        )
        .service(
            page("/settings/api-keys")
                .route(web::get().to(keys::list))
                .route(web::post().to(keys::create)),
        )
        .service(page("/settings/api-keys/{id}").route(web::get().to(usage::show)))
        .service(
            page("/settings/api-keys/{id}/revoke")
                .route(web::get().to(keys::confirm_revoke))
                .route(web::post().to(keys::revoke)),
        )
        .service(
            page("/settings/api-keys/{id}/rotate")
                .route(web::get().to(keys::confirm_rotate))
                .route(web::post().to(keys::rotate)),
        )
        .service(page("/settings/sessions").route(web::get().to(sessions::list)))
        .service(page("/settings/sessions/{id}/end").route(web::post().to(sessions::end)))
        .service(page("/settings/security").route(web::get().to(security::show)))
        .service(
            page("/settings/reauthenticate")
                .route(web::get().to(reauth::form))
                .route(web::post().to(reauth::reauthenticate)),
        )
        .service(page("/settings/security/password").route(web::post().to(security::change_password)))
        .service(
            page("/settings/security/providers/{provider}/unlink").route(web::post().to(providers::unlink_provider)),
        )
        .service(page("/settings/security/providers/{provider}/link").route(web::post().to(providers::link_provider)))
        .service(page("/settings/security/passkeys").route(web::post().to(passkeys::register)))
        .service(page("/settings/security/passkeys/start").route(web::post().to(passkeys::register_start)))
        .service(page("/settings/security/passkeys/{id}/remove").route(web::post().to(passkeys::remove)))
        .service(page("/settings/security/two-factor").route(web::post().to(security::begin_totp)))
        .service(page("/settings/security/two-factor/confirm").route(web::post().to(security::confirm_totp)))
        .service(page("/settings/security/two-factor/disable").route(web::post().to(security::disable_totp)))
        .service(web::resource("/assets/{name}").route(web::get().to(assets::serve)));
}
