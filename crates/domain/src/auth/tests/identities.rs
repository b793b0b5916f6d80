//! Linked provider identities: listed with their last use, unlinked unless
//! they are the account's last way in.

use super::*;
use crate::auth::identities::UnlinkError;

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
