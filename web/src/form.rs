//! The fields of a submitted form, sent URL-encoded (`application/x-www-form-urlencoded`, as our pages send
//! them) or as `multipart/form-data` (as the reference's pages send theirs). A form is read whole, up to
//! [`FORM_LIMIT`] bytes; multipart file parts carry no field and are skipped.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};

/// Most bytes of a form body read (the HTTP layer limits bodies too).
pub(crate) const FORM_LIMIT: usize = 1 << 20;

/// How a form body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    UrlEncoded,
    Multipart,
}

impl Encoding {
    /// The encoding the request's `Content-Type` declares, if it declares a form.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Encoding> {
        let declared = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.trim_start().to_ascii_lowercase();
        if declared.starts_with("application/x-www-form-urlencoded") {
            Some(Encoding::UrlEncoded)
        } else if declared.starts_with("multipart/form-data") {
            Some(Encoding::Multipart)
        } else {
            None
        }
    }
}

/// Why a body could not be read as a form.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormFault {
    #[error("send the form as multipart/form-data or application/x-www-form-urlencoded")]
    NotAForm,
    #[error("the form is larger than {FORM_LIMIT} bytes: send less")]
    TooLarge,
    #[error("the form cannot be read ({0}): send it again from the page")]
    Unreadable(String),
}

impl axum::response::IntoResponse for FormFault {
    fn into_response(self) -> axum::response::Response {
        let status = match self {
            FormFault::NotAForm => axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FormFault::TooLarge => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            FormFault::Unreadable(_) => axum::http::StatusCode::BAD_REQUEST,
        };
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.to_string()).into_response()
    }
}

/// The fields of a form body of `encoding`, in the order sent; `headers` carry the multipart boundary.
pub(crate) async fn fields(
    encoding: Encoding,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Vec<(String, String)>, FormFault> {
    match encoding {
        Encoding::UrlEncoded => serde_urlencoded::from_bytes(&bytes).map_err(|e| FormFault::Unreadable(e.to_string())),
        Encoding::Multipart => {
            let mut req = Request::new(Body::from(bytes));
            if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                req.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            let mut parts =
                Multipart::from_request(req, &()).await.map_err(|e| FormFault::Unreadable(e.body_text()))?;
            let mut out = Vec::new();
            while let Some(field) = parts.next_field().await.map_err(|e| FormFault::Unreadable(e.body_text()))? {
                let Some(name) = field.name().map(str::to_string) else { continue };
                if field.file_name().is_some() {
                    continue;
                }
                let value = field.text().await.map_err(|e| FormFault::Unreadable(e.body_text()))?;
                out.push((name, value));
            }
            Ok(out)
        }
    }
}

/// Reads a request's body as a form: its encoding, its bytes (to put back) and its fields.
pub(crate) async fn read(headers: &HeaderMap, body: Body) -> Result<(Bytes, Vec<(String, String)>), FormFault> {
    let encoding = Encoding::of(headers).ok_or(FormFault::NotAForm)?;
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| FormFault::TooLarge)?;
    let fields = fields(encoding, headers, bytes.clone()).await?;
    Ok((bytes, fields))
}

/// A form's fields by name; a name sent twice keeps its first value.
#[derive(Debug, Default)]
pub(crate) struct FormFields(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for FormFields {
    type Rejection = FormFault;

    async fn from_request(req: Request, _state: &S) -> Result<FormFields, FormFault> {
        let (parts, body) = req.into_parts();
        let (_, fields) = read(&parts.headers, body).await?;
        let mut map = HashMap::new();
        for (k, v) in fields {
            map.entry(k).or_insert(v);
        }
        Ok(FormFields(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    }

    #[tokio::test]
    async fn both_encodings_give_the_same_fields() {
        let h = headers("application/x-www-form-urlencoded");
        let url = fields(Encoding::UrlEncoded, &h, Bytes::from_static(b"csrf_token=a%2Bb&job_number=J+1")).await;
        let want = vec![("csrf_token".to_string(), "a+b".to_string()), ("job_number".to_string(), "J 1".to_string())];
        assert_eq!(url.unwrap(), want);

        let h = headers("multipart/form-data; boundary=XyZ");
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\na+b\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.txt\"\r\n\r\nfile\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"job_number\"\r\n\r\nJ 1\r\n--XyZ--\r\n";
        assert_eq!(fields(Encoding::Multipart, &h, Bytes::from(body)).await.unwrap(), want, "file parts skipped");
    }

    #[tokio::test]
    async fn a_broken_body_is_a_fault_not_a_panic() {
        let h = headers("multipart/form-data; boundary=XyZ");
        let cut = Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated");
        assert!(matches!(fields(Encoding::Multipart, &h, cut).await, Err(FormFault::Unreadable(_))));
        let h = headers("multipart/form-data");
        assert!(matches!(fields(Encoding::Multipart, &h, Bytes::new()).await, Err(FormFault::Unreadable(_))));
        assert_eq!(Encoding::of(&headers("application/json")), None);
        assert_eq!(Encoding::of(&headers("Multipart/Form-Data; boundary=b")), Some(Encoding::Multipart));
    }
}
