//! TLS to the database: rustls (ring), the server's certificate verified against the Mozilla
//! roots and, with `sslrootcert=FILE` in the URL, the CAs in that PEM file. rustls always
//! checks the chain and the host name, so `sslmode=require`, `verify-ca` and `verify-full` all
//! verify fully; a URL without `sslmode` connects in plain TCP.

use owl_store::StoreError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// Takes owl's own `sslrootcert` out of the URL (the client library does not know it) and
/// maps libpq's `verify-ca` and `verify-full` to `require`, which verifies here anyway.
pub(crate) fn split_url(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut root = None;
    let mut kept = vec![];
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslrootcert", v)) => root = Some(decode(v)),
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require".to_string()),
            _ => kept.push(pair.to_string()),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (url, root)
}

/// Whether the URL (or key=value string) chooses an sslmode itself.
pub(crate) fn names_sslmode(url: &str) -> bool {
    url.contains("sslmode=")
}

fn decode(v: &str) -> String {
    let mut out = Vec::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn connector(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Backend(format!("sslrootcert={path}: cannot read the CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(StoreError::Backend(format!("sslrootcert={path}: the file holds no PEM certificate")));
        }
        for c in certs {
            roots.add(c).map_err(|e| StoreError::Backend(format!("sslrootcert={path}: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    #[test]
    fn owl_keys_leave_the_url_and_verify_modes_become_require() {
        let (u, r) = super::split_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(u, "postgres://u@h/db?sslmode=require&application_name=x");
        assert_eq!(r.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(super::split_url("postgres://u@h/db"), ("postgres://u@h/db".to_string(), None));
        assert_eq!(super::split_url("postgres://u@h/db?sslrootcert=/x").0, "postgres://u@h/db");
    }
}
