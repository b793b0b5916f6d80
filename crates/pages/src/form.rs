//! URL-encoded form bodies, with repeated fields (the scope checkboxes).

use super::error::PageError;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use futures_util::StreamExt;

/// The fields of a posted form, in order.
pub(crate) struct FormData(Vec<(String, String)>);

impl FormData {
    /// Reads at most [`convosphere_service::common::MAX_BODY_BYTES`] of the body.
    pub async fn read(payload: &mut Payload) -> Result<Self, PageError> {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| PageError::Page {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
            })?;
            if body.len() + chunk.len() > convosphere_service::common::MAX_BODY_BYTES {
                return Err(PageError::Page {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "payload_too_large",
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Self(
            form_urlencoded::parse(&body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        ))
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The first value of a field, or `""`.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }

    /// The value of an optional field; blank counts as absent.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty()).map(str::to_owned)
    }

    /// Every value of a repeated field.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}
