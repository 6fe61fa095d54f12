//! The certificate authorities outbound https trusts.
//!
//! Mozilla's roots (webpki-roots) are compiled into the binary, so https works in an image
//! with no CA bundle at all; the system's roots are added when it has them, and the
//! certificates of `tls.ca_file` for endpoints behind a private CA.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

/// Where the trusted roots came from, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RootCount {
    pub(crate) mozilla: usize,
    pub(crate) system: usize,
    pub(crate) ca_file: usize,
}

/// The root store: Mozilla's, then `system` (what the platform offered; certificates
/// rustls refuses are skipped), then `extra` (`tls.ca_file`, every one must parse).
pub(crate) fn roots(
    system: Vec<CertificateDer<'static>>,
    extra: &[CertificateDer<'static>],
) -> Result<(RootCertStore, RootCount), rustls::Error> {
    let mut store = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mozilla = store.len();
    let (system, _refused) = store.add_parsable_certificates(system);
    for cert in extra {
        store.add(cert.clone())?;
    }
    Ok((
        store,
        RootCount {
            mozilla,
            system,
            ca_file: extra.len(),
        },
    ))
}

/// The system's certificates, or none when it has none (a minimal image).
pub(crate) fn system_certs() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a system certificate could not be loaded");
    }
    found.certs
}

/// The client TLS configuration over `roots`.
pub(crate) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_any_system_certificate_mozillas_roots_are_trusted() {
        // A container image with no CA bundle: the system offers nothing.
        let (store, count) = roots(Vec::new(), &[]).expect("roots");
        assert!(count.mozilla > 100, "{count:?}");
        assert_eq!(store.len(), count.mozilla);
        assert_eq!(count.system, 0);
    }

    #[test]
    fn a_private_ca_is_added_and_a_broken_one_refused() {
        use rustls::pki_types::pem::PemObject;
        let pem = include_bytes!("../../../../tests/fixtures/tls/ca.pem");
        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .expect("pem");
        let (store, count) = roots(Vec::new(), &ca).expect("roots");
        assert_eq!(count.ca_file, 1);
        assert_eq!(store.len(), count.mozilla + 1);
        let garbage = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])];
        assert!(roots(Vec::new(), &garbage).is_err());
    }
}
