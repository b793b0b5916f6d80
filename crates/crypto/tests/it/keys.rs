use convosphere_crypto::{load_or_generate_secret_key, load_or_generate_signing_key, KeyError, SecretKey, SigningKey};
use std::fs;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_signing_key_is_generated_once_then_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/jwt-signing-key.pem");
    let first = load_or_generate_signing_key(&path).unwrap();
    let written = fs::read(&path).unwrap();
    assert!(written.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
    let again = load_or_generate_signing_key(&path).unwrap();
    assert_eq!(again.key_id(), first.key_id());
    assert_eq!(again.public_jwk(), first.public_jwk());
    assert_eq!(fs::read(&path).unwrap(), written, "the file was rewritten");
    // No temporary files are left beside it.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn a_signing_key_made_by_openssl_loads() {
    // `openssl genpkey -algorithm ed25519`: the RFC 8032 test key 1.
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    fs::write(&path, pem).unwrap();
    let key = load_or_generate_signing_key(&path).unwrap();
    assert_eq!(key.public_jwk()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(SigningKey::from_pem(pem.as_bytes()).unwrap().key_id(), key.key_id());
}

#[test]
fn a_bad_signing_key_file_names_the_file_and_not_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    fs::write(
        &path,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGdhcmJhZ2U=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = load_or_generate_signing_key(&path).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, KeyError::Invalid(_)));
    assert!(message.contains("key.pem"), "{message}");
    assert!(!message.contains("c2VjcmV0"), "{message}");
}

#[test]
fn the_secret_key_is_generated_once_then_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/secret.key");
    let first = load_or_generate_secret_key(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), first.expose());
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let again = load_or_generate_secret_key(&path).unwrap();
    assert_eq!(again.expose(), first.expose());
    assert_ne!(first.expose(), &[0; SecretKey::LEN]);
    assert_ne!(
        load_or_generate_secret_key(dir.path().join("other.key"))
            .unwrap()
            .expose(),
        first.expose()
    );
}

#[test]
fn a_wrong_length_secret_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.key");
    fs::write(&path, [7u8; 31]).unwrap();
    let err = load_or_generate_secret_key(&path).unwrap_err().to_string();
    assert!(err.contains("secret.key") && err.contains("31 bytes"), "{err}");
}

#[cfg(unix)]
#[test]
fn an_unreadable_key_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the file should be cannot be read as a file.
    let path = dir.path().join("secret.key");
    fs::create_dir(&path).unwrap();
    assert!(matches!(load_or_generate_secret_key(&path), Err(KeyError::Io { .. })));
}

#[test]
fn parallel_starts_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt-signing-key.pem");
    let kids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| load_or_generate_signing_key(&path).unwrap().key_id().to_owned()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(kids.iter().all(|kid| kid == &kids[0]), "{kids:?}");
    assert_eq!(load_or_generate_signing_key(&path).unwrap().key_id(), kids[0]);
}
