//! The ceremonies end to end against the software authenticator.

use convosphere_domain::passkey::{CredentialId, NewCredential};
use convosphere_domain::ports::PasskeyVerifier;
use convosphere_passkey::testing::{example_user, SoftAuthenticator};
use convosphere_passkey::WebauthnVerifier;

const ORIGIN: &str = "http://localhost:8080";

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn verifier() -> Result<WebauthnVerifier> {
    Ok(WebauthnVerifier::new("localhost", ORIGIN, "Convosphere AI")?)
}

fn register(verifier: &WebauthnVerifier, authenticator: &mut SoftAuthenticator) -> Result<NewCredential> {
    let started = verifier.start_registration(&example_user()?, &[])?;
    let answer = authenticator.register(&started.options)?;
    Ok(verifier.finish_registration(&started.state, &answer)?)
}

#[test]
fn registration_asks_for_a_discoverable_credential_with_user_verification() -> Result {
    let user = example_user()?;
    let started = verifier()?.start_registration(&user, &[CredentialId(vec![1, 2, 3])])?;
    let options: serde_json::Value = serde_json::from_str(&started.options)?;
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(options["authenticatorSelection"]["requireResidentKey"], true);
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(options["user"]["name"], "ada@example.com");
    assert_eq!(options["excludeCredentials"][0]["id"], "AQID");
    assert!(
        options["challenge"].as_str().is_some_and(|c| c.len() >= 43),
        "{options}"
    );
    Ok(())
}

#[test]
fn a_registered_passkey_signs_in_and_its_counter_grows() -> Result {
    let verifier = verifier()?;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let credential = register(&verifier, &mut authenticator)?;
    assert!(!credential.backed_up);

    let mut stored = credential.credential.clone();
    for expected in 1..=3 {
        let started = verifier.start_sign_in()?;
        let options: serde_json::Value = serde_json::from_str(&started.options)?;
        assert_eq!(options["userVerification"], "required");
        assert!(
            options["allowCredentials"].as_array().is_none_or(Vec::is_empty),
            "discoverable: {options}"
        );
        let answer = authenticator.sign_in(&started.options)?;
        let claimed = verifier.claimed(&answer)?;
        assert_eq!(claimed.credential_id, credential.credential_id);
        assert_eq!(claimed.user_handle, example_user()?.id.as_uuid().as_bytes().to_vec());
        let verified = verifier.finish_sign_in(&started.state, &answer, &stored)?;
        assert_eq!(verified.sign_count, expected);
        stored = verified.credential;
    }
    Ok(())
}

#[test]
fn a_counter_that_does_not_grow_is_refused() -> Result {
    let verifier = verifier()?;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let credential = register(&verifier, &mut authenticator)?;
    authenticator.set_counter(0, 10);
    let started = verifier.start_sign_in()?;
    let answer = authenticator.sign_in(&started.options)?;
    let stored = verifier
        .finish_sign_in(&started.state, &answer, &credential.credential)?
        .credential;

    // A clone of the authenticator, behind the original: counter 6 after 11.
    authenticator.set_counter(0, 5);
    let started = verifier.start_sign_in()?;
    let answer = authenticator.sign_in(&started.options)?;
    let refused = verifier.finish_sign_in(&started.state, &answer, &stored);
    assert!(refused.is_err(), "a counter going back must be refused");
    Ok(())
}

#[test]
fn an_answer_for_another_challenge_is_refused() -> Result {
    let verifier = verifier()?;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let credential = register(&verifier, &mut authenticator)?;
    let first = verifier.start_sign_in()?;
    let second = verifier.start_sign_in()?;
    let answer = authenticator.sign_in(&first.options)?;
    assert!(verifier
        .finish_sign_in(&second.state, &answer, &credential.credential)
        .is_err());
    assert!(verifier
        .finish_sign_in(&first.state, &answer, &credential.credential)
        .is_ok());
    Ok(())
}

#[test]
fn another_credential_cannot_finish_for_a_stored_one() -> Result {
    let verifier = verifier()?;
    let mut ours = SoftAuthenticator::new(ORIGIN);
    let mut theirs = SoftAuthenticator::new(ORIGIN);
    let credential = register(&verifier, &mut ours)?;
    register(&verifier, &mut theirs)?;
    let started = verifier.start_sign_in()?;
    let answer = theirs.sign_in(&started.options)?;
    assert!(verifier
        .finish_sign_in(&started.state, &answer, &credential.credential)
        .is_err());
    Ok(())
}

#[test]
fn the_wrong_origin_or_rp_id_is_refused() -> Result {
    let verifier = verifier()?;
    // Registration from a page of another origin.
    let mut phished = SoftAuthenticator::new("http://localhost.evil.example:8080");
    let started = verifier.start_registration(&example_user()?, &[])?;
    let answer = phished.register(&started.options)?;
    assert!(verifier.finish_registration(&started.state, &answer).is_err());

    // A passkey of this RP, asked for by a page of another origin.
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let credential = register(&verifier, &mut authenticator)?;
    authenticator.set_origin("http://localhost:9999");
    let started = verifier.start_sign_in()?;
    let answer = authenticator.sign_in(&started.options)?;
    assert!(verifier
        .finish_sign_in(&started.state, &answer, &credential.credential)
        .is_err());

    // A passkey made for another RP id.
    let elsewhere = WebauthnVerifier::new("example.com", "https://auth.example.com", "Other")?;
    let mut foreign = SoftAuthenticator::new("https://auth.example.com");
    let foreign_credential = register(&elsewhere, &mut foreign)?;
    let started = elsewhere.start_sign_in()?;
    let answer = foreign.sign_in(&started.options)?;
    assert!(verifier
        .finish_sign_in(&started.state, &answer, &foreign_credential.credential)
        .is_err());
    Ok(())
}

#[test]
fn an_authenticator_without_user_verification_is_refused() -> Result {
    let verifier = verifier()?;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    authenticator.verifies_user = false;
    let started = verifier.start_registration(&example_user()?, &[])?;
    let answer = authenticator.register(&started.options)?;
    assert!(verifier.finish_registration(&started.state, &answer).is_err());
    Ok(())
}

#[test]
fn an_excluded_authenticator_does_not_register_twice() -> Result {
    let verifier = verifier()?;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let credential = register(&verifier, &mut authenticator)?;
    let started = verifier.start_registration(&example_user()?, &[credential.credential_id])?;
    assert!(authenticator.register(&started.options).is_err());
    assert_eq!(authenticator.len(), 1);
    Ok(())
}

#[test]
fn a_synced_passkey_is_reported_backed_up() -> Result {
    let verifier = verifier()?;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    authenticator.backed_up = true;
    authenticator.counter_step = 0;
    let credential = register(&verifier, &mut authenticator)?;
    assert!(credential.backed_up);
    let started = verifier.start_sign_in()?;
    let answer = authenticator.sign_in(&started.options)?;
    let verified = verifier.finish_sign_in(&started.state, &answer, &credential.credential)?;
    assert!(verified.backed_up);
    assert_eq!(verified.sign_count, 0, "synced passkeys have no counter");
    Ok(())
}
