use convosphere_crypto::{Argon2Hasher, Argon2Params, OUTPUT_LEN};
use convosphere_domain::ports::PasswordHasher;
use convosphere_domain::{Password, PasswordHash};

/// Cheap parameters (64 KiB, one pass) so that most tests run in microseconds.
fn cheap_hasher() -> Argon2Hasher {
    Argon2Hasher::new(Argon2Params::new(64, 1, 1, Some(OUTPUT_LEN)).unwrap()).unwrap()
}

#[tokio::test]
async fn a_hash_verifies_its_password_only() {
    let hasher = cheap_hasher();
    let hash = hasher
        .hash(&Password::candidate("correct horse battery"))
        .await
        .unwrap();
    assert!(hasher
        .verify(&Password::candidate("correct horse battery"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher
        .verify(&Password::candidate("correct horse battery!"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher
        .verify(&Password::candidate("Correct horse battery"), Some(&hash))
        .await
        .unwrap());
}

#[tokio::test]
async fn hashes_are_phc_strings_with_a_fresh_salt() {
    let hasher = cheap_hasher();
    let password = Password::candidate("same password twice");
    let first = hasher.hash(&password).await.unwrap();
    let second = hasher.hash(&password).await.unwrap();
    assert!(
        first.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        first.as_str()
    );
    assert_ne!(first, second);
    // 16-byte salt and 32-byte output: 22 and 43 base64 characters.
    let parts: Vec<&str> = first.as_str().split('$').collect();
    assert_eq!((parts[4].len(), parts[5].len()), (22, 43));
}

#[tokio::test]
async fn nfkc_equivalent_spellings_verify() {
    let hasher = cheap_hasher();
    let hash = hasher
        .hash(&Password::candidate("caf\u{e9} au lait \u{fb01}ne"))
        .await
        .unwrap();
    // Decomposed "é" and the "fi" ligature spelled out: the same after NFKC.
    let typed_elsewhere = Password::candidate("cafe\u{301} au lait fine");
    assert!(hasher.verify(&typed_elsewhere, Some(&hash)).await.unwrap());
}

#[tokio::test]
async fn hashes_made_with_other_parameters_still_verify() {
    let hasher = cheap_hasher();
    let older = Argon2Hasher::new(Argon2Params::new(256, 3, 2, Some(OUTPUT_LEN)).unwrap()).unwrap();
    let hash = older.hash(&Password::candidate("made long ago")).await.unwrap();
    assert!(hash.as_str().starts_with("$argon2id$v=19$m=256,t=3,p=2$"));
    assert!(hasher
        .verify(&Password::candidate("made long ago"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher
        .verify(&Password::candidate("made long ago?"), Some(&hash))
        .await
        .unwrap());
    assert!(hasher.needs_rehash(&hash));
}

#[tokio::test]
async fn hashes_of_the_reference_implementation_verify() {
    // Made by the reference `argon2` CLI (Debian's package), e.g.
    // `echo -n password | argon2 somesalt -id -t 2 -k 65536 -p 1 -l 32 -e`.
    let hasher = cheap_hasher();
    for (phc, password) in [
        (
            "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
            "password",
        ),
        (
            "$argon2i$v=16$m=256,t=3,p=2$c29tZXNhbHQ$rBbOqFPqfWLZ4rR4Iqu8lf1nzUDKRVpI",
            "password",
        ),
        (
            "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$2Rwog66+0L017dskwgtpnw",
            "hunter2hunter2",
        ),
    ] {
        let hash = PasswordHash::from_phc(phc);
        assert!(
            hasher
                .verify(&Password::candidate(password), Some(&hash))
                .await
                .unwrap(),
            "{phc}"
        );
        assert!(
            !hasher
                .verify(&Password::candidate("passwore"), Some(&hash))
                .await
                .unwrap(),
            "{phc}"
        );
        assert!(hasher.needs_rehash(&hash));
    }
}

#[tokio::test]
async fn without_a_hash_verify_answers_false() {
    let hasher = cheap_hasher();
    for typed in ["", "anything", "correct horse battery"] {
        assert!(!hasher.verify(&Password::candidate(typed), None).await.unwrap());
    }
}

#[tokio::test]
async fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
    let hasher = cheap_hasher();
    for phc in [
        "",
        "plain text",
        "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ",
        "$2b$12$abcdefghijklmnopqrstuv",
    ] {
        let result = hasher
            .verify(&Password::candidate("x"), Some(&PasswordHash::from_phc(phc)))
            .await;
        assert!(result.is_err(), "{phc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_on_hashes_in_flight_holds() {
    // Enough memory per hash that several hashes would overlap if allowed.
    let params = Argon2Params::new(4 * 1024, 1, 1, Some(OUTPUT_LEN)).unwrap();
    for bound in [1, 2] {
        let hasher = Argon2Hasher::with_max_in_flight(params.clone(), bound).unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    let password = Password::candidate(&format!("password number {i}"));
                    let hash = hasher.hash(&password).await.unwrap();
                    assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(hasher.peak_in_flight() >= 1);
        assert!(
            hasher.peak_in_flight() <= bound,
            "{} hashes ran at once with a bound of {bound}",
            hasher.peak_in_flight()
        );
        assert_eq!(hasher.in_flight(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_keeps_its_slot_until_the_hash_ends() {
    let params = Argon2Params::new(8 * 1024, 2, 1, Some(OUTPUT_LEN)).unwrap();
    let hasher = Argon2Hasher::with_max_in_flight(params, 1).unwrap();
    let password = Password::candidate("abandoned");
    // Start a hash and drop its future as soon as it is computing.
    {
        let abandoned = hasher.hash(&password);
        tokio::pin!(abandoned);
        let poll = futures_poll_once(abandoned.as_mut()).await;
        assert!(poll.is_none(), "the hash finished within one poll");
    }
    let hash = hasher.hash(&password).await.unwrap();
    assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
    assert_eq!(hasher.peak_in_flight(), 1);
}

/// Polls a future once: its output if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn owasp_parameters_make_owasp_hashes() {
    let hasher = Argon2Hasher::owasp().unwrap();
    assert_eq!(
        hasher.max_in_flight(),
        std::thread::available_parallelism().unwrap().get()
    );
    let hash = hasher
        .hash(&Password::candidate("correct horse battery staple"))
        .await
        .unwrap();
    assert!(
        hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        hash.as_str()
    );
    assert!(hasher
        .verify(&Password::candidate("correct horse battery staple"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher
        .verify(&Password::candidate("correct horse battery stapler"), Some(&hash))
        .await
        .unwrap());
    assert!(!hasher
        .verify(&Password::candidate("correct horse battery staple"), None)
        .await
        .unwrap());
    assert!(!hasher.needs_rehash(&hash));
}

#[tokio::test]
async fn a_stored_hash_that_asks_for_absurd_memory_is_refused() {
    let hasher = cheap_hasher();
    // 4 TiB: allocating it would abort the process.
    let planted = PasswordHash::from_phc(
        "$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
    );
    assert!(hasher
        .verify(&Password::candidate("password"), Some(&planted))
        .await
        .is_err());
}
