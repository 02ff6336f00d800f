//! The `s3://bucket/prefix` target: URL parsing and the object_store client built from it and the environment.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::{UploadConfig, UploadError};

/// Bucket and key prefix of an `s3://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

pub(crate) fn parse_url(url: &str) -> Result<S3Url, UploadError> {
    let bad = |reason: &str| UploadError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket name"));
    }
    if bucket.contains(['?', '#', '@', ':']) {
        return Err(bad("the bucket name may not contain ?, #, @ or :"));
    }
    let prefix = prefix.trim_matches('/').to_string();
    if !prefix.is_empty() {
        ObjectPath::parse(&prefix).map_err(|e| bad(&format!("prefix: {e}")))?;
    }
    Ok(S3Url {
        bucket: bucket.to_string(),
        prefix,
    })
}

/// The object path of `key` under the URL's prefix.
pub(crate) fn object_path(url: &S3Url, key: &str) -> Result<ObjectPath, String> {
    let key = key.trim_start_matches('/');
    let full = if url.prefix.is_empty() {
        key.to_string()
    } else {
        format!("{}/{key}", url.prefix)
    };
    ObjectPath::parse(&full).map_err(|e| format!("key {key:?}: {e}"))
}

/// The S3 client: the environment (`AWS_*`), then `cfg.s3_options`, then `cfg.endpoint`.
pub(crate) fn build_store(cfg: &UploadConfig, url: &S3Url) -> Result<Arc<dyn ObjectStore>, UploadError> {
    // reqwest is built without a bundled crypto provider (no aws-lc C build); use ring like the rest of mcptape.
    // An error only means some provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut b = AmazonS3Builder::from_env();
    for (k, v) in &cfg.s3_options {
        let key: AmazonS3ConfigKey = k.parse().map_err(|_| UploadError::InvalidOption { key: k.clone() })?;
        b = b.with_config(key, v);
    }
    if let Some(endpoint) = &cfg.endpoint {
        b = b.with_endpoint(endpoint);
    }
    if let Some(endpoint) = b.get_config_value(&AmazonS3ConfigKey::Endpoint)
        && is_loopback_http(&endpoint)
    {
        b = b.with_allow_http(true);
    }
    // object_store retries a failed request a little itself; the uploader's own backoff handles longer outages.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    };
    // A segment PUT may be tens of MB: a longer request timeout than object_store's 30 s, unless the
    // environment set one (with_client_options would replace AWS_ALLOW_HTTP and friends, so keys instead).
    for (key, value) in [("timeout", "300s"), ("connect_timeout", "10s")] {
        let key: AmazonS3ConfigKey = key.parse().expect("a client option of object_store");
        if b.get_config_value(&key).is_none() {
            b = b.with_config(key, value);
        }
    }
    let store = b
        .with_bucket_name(&url.bucket)
        .with_retry(retry)
        .build()
        .map_err(|source| UploadError::Store {
            url: cfg.url.clone(),
            source,
        })?;
    Ok(Arc::new(store))
}

fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        assert_eq!(
            parse_url("s3://b/some/prefix/").unwrap(),
            S3Url {
                bucket: "b".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            parse_url("s3://b").unwrap(),
            S3Url {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        for bad in ["https://b/x", "s3:///x", "s3://", "b/x", "s3://b:1/x"] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn keys_go_under_the_prefix() {
        let u = parse_url("s3://b/caps").unwrap();
        let p = object_path(&u, "date=2026-01-02/hour=03/s.parquet").unwrap();
        assert_eq!(p.as_ref(), "caps/date=2026-01-02/hour=03/s.parquet");
        let root = parse_url("s3://b").unwrap();
        assert_eq!(object_path(&root, "/x.parquet").unwrap().as_ref(), "x.parquet");
        assert!(object_path(&u, "a/../b").is_err());
    }

    #[test]
    fn only_loopback_http_is_allowed_implicitly() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://minio.internal:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
    }
}
