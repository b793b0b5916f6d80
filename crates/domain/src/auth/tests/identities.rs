//! Linked provider identities: listed with their last use, unlinked unless
//! they are the account's last way in.

use super::*;
use crate::auth::identities::{LinkStartError, UnlinkError};
use crate::auth::oauth::OAuthStartError;

fn google_login(world: &World, auth: &TestAuth<'_>, oauth: &OAuthLogin<FakeIdp>) -> User {
    let location = provider_login(auth, oauth, None, Ok(identity("g-1", "ada@example.com", true))).unwrap();
    let tokens = block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())).unwrap();
    world.advance(Duration::seconds(1));
    tokens.user
}

#[test]
fn identities_are_listed_with_their_last_use() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let user = google_login(&world, &auth, &oauth);
    let listed = block_on(auth.identities(user.id)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].provider, Provider::Google);
    assert_eq!(listed[0].email.as_str(), "ada@example.com");
    assert_eq!(listed[0].last_used_at, None, "the first login made the link");
    let second_login = world.clock.now();
    google_login(&world, &auth, &oauth);
    let listed = block_on(auth.identities(user.id)).unwrap();
    assert_eq!(listed[0].last_used_at, Some(second_login));
}

#[test]
fn the_last_way_in_is_not_unlinked_but_a_password_account_may_unlink() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    // An account made by the provider has no password: its only way in stays.
    let made = google_login(&world, &auth, &oauth);
    let principal = signed_in(&world, &made);
    assert!(matches!(
        block_on(auth.unlink_identity(&principal, Provider::Google, &client())),
        Err(UnlinkError::LastWayIn)
    ));
    assert_eq!(block_on(auth.identities(made.id)).unwrap().len(), 1);
    assert!(matches!(
        block_on(auth.unlink_identity(&principal, Provider::GitHub, &client())),
        Err(UnlinkError::NotFound)
    ));

    // An account with a password may let its provider go, after a recent sign-in.
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let ada = world.verified_user(&auth, "ada@example.com");
    google_login(&world, &auth, &oauth);
    let stale = signed_in(&world, &ada);
    world.advance(Duration::minutes(11));
    assert!(matches!(
        block_on(auth.unlink_identity(&stale, Provider::Google, &client())),
        Err(UnlinkError::RecentSignInRequired(_))
    ));
    let fresh = signed_in(&world, &ada);
    block_on(auth.unlink_identity(&fresh, Provider::Google, &client())).unwrap();
    assert!(block_on(auth.identities(ada.id)).unwrap().is_empty());
    assert!(world.event_kinds(ada.id).contains(&"oauth_unlinked"));
}

/// Starts a link of Google for `principal` and brings the provider's
/// `answer` back to the callback; the callback's outcome.
fn link_google(
    auth: &TestAuth<'_>,
    oauth: &OAuthLogin<FakeIdp>,
    principal: &Principal,
    answer: ProviderIdentity,
) -> Result<String, OAuthCallbackError> {
    let started = block_on(auth.oauth_link_start(oauth, principal, Provider::Google, "/settings/security")).unwrap();
    let state = started.location.split("state=").nth(1).unwrap().to_owned();
    let code = format!("code-{state}");
    oauth.providers.answer(&code, Ok(answer));
    let binding = started.browser_binding.expose().to_owned();
    block_on(auth.oauth_callback(
        oauth,
        Provider::Google,
        callback(&state, &code, Some(&binding)),
        &client(),
    ))
}

#[test]
fn a_signed_in_account_links_an_identity_with_another_address_and_signs_in_with_it() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let ada = world.verified_user(&auth, "ada@example.com");
    let (_, principal) = fresh_session(&auth, "ada@example.com");
    let location = link_google(&auth, &oauth, &principal, identity("g-ada", "ada@gmail.example", true)).unwrap();
    assert_eq!(location, "https://auth.example/settings/security?linked=google");
    let linked = block_on(auth.identities(ada.id)).unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].email.as_str(), "ada@gmail.example");
    assert!(world.event_kinds(ada.id).contains(&"oauth_linked"));
    // The account keeps its password; no account was made for the other address.
    let stored = block_on(auth.store.user_by_id(ada.id)).unwrap().unwrap();
    assert!(stored.password_hash.is_some());
    assert!(
        block_on(auth.store.user_by_email(&Email::parse("ada@gmail.example").unwrap()))
            .unwrap()
            .is_none()
    );
    // A login with that identity is a login to Ada's account.
    let location = provider_login(&auth, &oauth, None, Ok(identity("g-ada", "ada@gmail.example", true))).unwrap();
    let tokens = block_on(auth.oauth_exchange(&login_code(&location), &SecondFactor::default(), &client())).unwrap();
    assert_eq!(tokens.user.id, ada.id);

    // Linking the same provider again is refused before the provider is asked.
    assert!(matches!(
        block_on(auth.oauth_link_start(&oauth, &principal, Provider::Google, "/settings/security")),
        Err(LinkStartError::AlreadyLinked)
    ));
}

#[test]
fn a_link_needs_a_recent_sign_in_a_free_identity_and_a_live_session() {
    let world = World::new();
    let auth = world.auth();
    let oauth = oauth_login(FakeIdp::default());
    let ada = world.verified_user(&auth, "ada@example.com");
    let grace = world.verified_user(&auth, "grace@example.com");
    let (_, stale) = fresh_session(&auth, "ada@example.com");
    world.advance(AuthConfig::default().reauth_window);
    assert!(matches!(
        block_on(auth.oauth_link_start(&oauth, &stale, Provider::Google, "/settings/security")),
        Err(LinkStartError::RecentSignInRequired(_))
    ));
    // Only paths of this service (or the allowlist) come back.
    let (_, principal) = fresh_session(&auth, "ada@example.com");
    assert!(matches!(
        block_on(auth.oauth_link_start(&oauth, &principal, Provider::Google, "https://evil.example/")),
        Err(LinkStartError::Start(OAuthStartError::InvalidRedirect(_)))
    ));

    // An identity of another account stays there.
    let (_, graces) = fresh_session(&auth, "grace@example.com");
    link_google(&auth, &oauth, &graces, identity("g-grace", "grace@gmail.example", true)).unwrap();
    match link_google(
        &auth,
        &oauth,
        &principal,
        identity("g-grace", "grace@gmail.example", true),
    ) {
        Err(OAuthCallbackError::Failed { back_to, .. }) => assert_eq!(
            back_to.as_deref(),
            Some("https://auth.example/settings/security?error=identity_taken")
        ),
        other => panic!("{other:?}"),
    }
    assert!(block_on(auth.identities(ada.id)).unwrap().is_empty());
    assert_eq!(block_on(auth.identities(grace.id)).unwrap().len(), 1);

    // No verified address from the provider: nothing is linked.
    match link_google(&auth, &oauth, &principal, identity("g-ada", "ada@gmail.example", false)) {
        Err(OAuthCallbackError::Failed { back_to, .. }) => {
            assert_eq!(
                back_to.as_deref(),
                Some("https://auth.example/settings/security?error=oauth_failed")
            )
        }
        other => panic!("{other:?}"),
    }

    // The session that asked ends before the provider answers: nothing is linked.
    let started = block_on(auth.oauth_link_start(&oauth, &principal, Provider::Google, "/settings/security")).unwrap();
    block_on(auth.logout(ada.id, principal.session_id, &client())).unwrap();
    let state = started.location.split("state=").nth(1).unwrap().to_owned();
    let code = format!("code-{state}");
    oauth
        .providers
        .answer(&code, Ok(identity("g-ada", "ada@gmail.example", true)));
    let binding = started.browser_binding.expose().to_owned();
    match block_on(auth.oauth_callback(
        &oauth,
        Provider::Google,
        callback(&state, &code, Some(&binding)),
        &client(),
    )) {
        Err(OAuthCallbackError::Failed { back_to, .. }) => assert_eq!(
            back_to.as_deref(),
            Some("https://auth.example/settings/security?error=session_ended")
        ),
        other => panic!("{other:?}"),
    }
    assert!(block_on(auth.identities(ada.id)).unwrap().is_empty());
}
