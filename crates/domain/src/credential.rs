//! A bearer credential as presented, told apart by its form alone.

/// A bearer credential as presented: an API key (`cs_…`) or else an
/// access token. One rule, so that every caller tells them apart alike.
///
/// ```
/// use convosphere_domain::Credential;
/// assert_eq!(Credential::parse("cs_4fTq9ZkB_x"), Credential::ApiKey("cs_4fTq9ZkB_x"));
/// assert_eq!(Credential::parse("eyJhbGciOi.x.y"), Credential::AccessToken("eyJhbGciOi.x.y"));
/// ```
///
/// Telling the kind checks nothing else: an API key's format and checksum
/// are [`PresentedApiKey::parse`](crate::api_key::PresentedApiKey::parse)'s,
/// an access token's signature and claims the token verifier's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A user access token (a JWT).
    AccessToken(&'a str),
    /// An API key.
    ApiKey(&'a str),
}

impl<'a> Credential<'a> {
    /// Tells the kind of a credential by its prefix.
    pub fn parse(credential: &'a str) -> Self {
        if credential.starts_with(crate::api_key::KEY_PREFIX) {
            Credential::ApiKey(credential)
        } else {
            Credential::AccessToken(credential)
        }
    }
}
