//! Set a configured set of headers on requests or responses, reloadable live.
//!
//! A [`HeaderSet`] is the policy: validated names and values (no CR/LF or other control
//! characters, no framing headers such as `content-length`), each either overriding what
//! the message has or added only if absent. Values that look like credentials
//! (`authorization`, `cookie`, names with `token`, `secret`, `key`, `password`, …) are marked
//! sensitive (kept out of HTTP/2 header compression tables) and redacted in `Debug`.
//!
//! [`SetRequestHeadersLayer`] sets them on requests (custom headers of a webhook endpoint,
//! on the way out); [`SetResponseHeadersLayer`] on responses (an axum app's own headers).
//! They are two types, as in tower-http: the request side returns the inner future as it
//! is, the response side has a future of its own. Built from a [`HeaderSetHandle`], the set
//! can be swapped while the service runs; each message reads the set once.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, http::{HeaderMap, Request}, routing::get};
//! use hookrelay_tower::set_headers::{HeaderSet, HeaderSetHandle};
//! use hookrelay_tower::{SetRequestHeadersLayer, SetResponseHeadersLayer};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let set = HeaderSet::new()
//!     .overriding("x-served-by", "hookrelay")
//!     .unwrap()
//!     .if_absent("cache-control", "no-store")
//!     .unwrap();
//! let handle = HeaderSetHandle::new(set);
//! let app = Router::new()
//!     .route("/", get(|| async { ([("cache-control", "max-age=60")], "hi") }))
//!     .layer(SetResponseHeadersLayer::new(handle.clone()));
//! let fetch = || app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap());
//!
//! let res = fetch().await.unwrap();
//! assert_eq!(res.headers()["x-served-by"], "hookrelay");
//! assert_eq!(res.headers()["cache-control"], "max-age=60"); // present: kept
//!
//! // Values are validated, secrets are redacted.
//! assert!(HeaderSet::new().overriding("x-evil", "a\r\nset-cookie: b").is_err());
//! let auth = HeaderSet::new().overriding("authorization", "Bearer s3cr3t").unwrap();
//! assert!(!format!("{auth:?}").contains("s3cr3t"));
//!
//! // A reload applies to the next response.
//! handle.set(HeaderSet::new().overriding("x-served-by", "v2").unwrap());
//! assert_eq!(fetch().await.unwrap().headers()["x-served-by"], "v2");
//!
//! // On requests: the handler sees the header.
//! let tenant = HeaderSet::new().overriding("x-tenant", "blue").unwrap();
//! let app = Router::new()
//!     .route("/", get(|headers: HeaderMap| async move { headers["x-tenant"].to_str().unwrap().to_owned() }))
//!     .layer(SetRequestHeadersLayer::new(tenant));
//! let res = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! let body = axum::body::to_bytes(res.into_body(), 64).await.unwrap();
//! assert_eq!(body, "blue");
//! # }
//! ```

mod future;
mod header_set;
mod request;
mod response;

pub use future::ResponseFuture;
pub use header_set::{HeaderError, HeaderSet, HeaderSetHandle, Mode};
pub use request::{SetRequestHeaders, SetRequestHeadersLayer};
pub use response::{SetResponseHeaders, SetResponseHeadersLayer};
