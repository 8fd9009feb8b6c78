//! A response timeout that starts when the request has been sent.
//!
//! The SDK's `read_timeout` and attempt timeout start with the request, so they also bound
//! the time it takes to send the body: any value short enough to catch a stalled server
//! would cut off a 16 MiB part on a slow uplink shared by 64 requests. Here the clock starts
//! only once the whole body has been handed to the connection, so it measures the server
//! alone. A body that stops moving is caught by the SDK's stalled-stream protection
//! instead, and a connection that cannot be made by the connect timeout. The timeout is a
//! connector timeout error, which the SDK retries like any transient failure.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::config::{RuntimeComponents, SharedHttpClient};
use aws_smithy_http_client::tls::TlsContext;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Wraps `inner` so that every request whose body was sent fails with a timeout error
/// if no response headers arrive within `timeout`.
pub fn with_response_timeout(inner: SharedHttpClient, timeout: Duration) -> SharedHttpClient {
    SharedHttpClient::new(ResponseTimeoutClient { inner, timeout })
}

/// The HTTPS client the SDK would pick by default (hyper 1, rustls with aws-lc, proxy
/// settings from the environment), built here because the SDK only makes it inside the
/// client, where it cannot be wrapped. `tls` replaces the default trust (the system's
/// roots) when a CA bundle is configured (see `s3::ca_bundle`).
pub fn default_https_client(tls: Option<TlsContext>) -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        if let Some(tls) = &tls {
            conn.set_tls_context(tls.clone());
        }
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

#[derive(Debug)]
struct ResponseTimeoutClient {
    inner: SharedHttpClient,
    timeout: Duration,
}

impl HttpClient for ResponseTimeoutClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The inner client caches its connectors (and their pools) by settings.
        SharedHttpConnector::new(ResponseTimeoutConnector {
            inner: self.inner.http_connector(settings, components),
            timeout: self.timeout,
        })
    }
}

#[derive(Debug)]
struct ResponseTimeoutConnector {
    inner: SharedHttpConnector,
    timeout: Duration,
}

impl HttpConnector for ResponseTimeoutConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let sent = Arc::new(Notify::new());
        let body = std::mem::replace(request.body_mut(), SdkBody::taken());
        if body.is_end_stream() || body.content_length() == Some(0) {
            sent.notify_one();
        }
        *request.body_mut() = SdkBody::from_body_1_x(SignalEnd {
            inner: body,
            sent: sent.clone(),
        });
        let response = self.inner.call(request);
        let timeout = self.timeout;
        HttpConnectorFuture::new(async move {
            let expired = async {
                sent.notified().await;
                tokio::time::sleep(timeout).await;
            };
            tokio::select! {
                r = response => r.map_err(untrusted_certificate),
                () = expired => Err(ConnectorError::timeout(
                    format!("no response within {} s of sending the request", timeout.as_secs_f64()).into(),
                )),
            }
        })
    }
}

/// A server certificate that does not verify becomes an error that says so and is not
/// retried (the SDK would retry it as an I/O error, and its text is deep in the chain).
/// Every other error passes unchanged.
fn untrusted_certificate(e: ConnectorError) -> ConnectorError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|r| r as &(dyn std::error::Error + 'static));
        let tls = inner
            .or(Some(c))
            .and_then(|x| x.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(why)) = tls {
            return ConnectorError::other(Box::new(UntrustedCertificate(format!("{why:?}"))), None);
        }
        cause = inner.or_else(|| c.source());
    }
    e
}

/// Its Debug is its name only, so that a message that also shows the error's Debug (the
/// SDK's error context) does not repeat the text.
struct UntrustedCertificate(String);

impl std::fmt::Display for UntrustedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's TLS certificate is not trusted ({}); for a private CA, set \
             AWS_CA_BUNDLE or ca_bundle in the AWS profile to its PEM file",
            self.0
        )
    }
}

impl std::fmt::Debug for UntrustedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UntrustedCertificate")
    }
}

impl std::error::Error for UntrustedCertificate {}

/// A request body that says when its last byte has been taken.
struct SignalEnd {
    inner: SdkBody,
    sent: Arc<Notify>,
}

impl Body for SignalEnd {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.sent.notify_one(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.sent.notify_one(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        Body::size_hint(&self.inner)
    }
}
