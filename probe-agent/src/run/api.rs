//! The agent's API client: kube's own stack, with every answer of the API server counted —
//! also the 429s and 503s that the client's retry policy answers by waiting and trying again,
//! which its callers never see. So throttling shows in `/metrics` and in the log while the
//! agent keeps counting, not only once a publication finally fails.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use axum::http::{Request, Response, StatusCode};
use kube::client::{Body, ClientBuilder, retry::RetryPolicy};
use tower::{BoxError, Layer, Service, buffer::BufferLayer, retry::RetryLayer};

/// Requests that may wait for the client at a time (more wait their turn, none fail).
const BUFFER: usize = 1024;
/// At most one log line per this many seconds about refusals.
const WARN_EVERY_SECS: u64 = 30;

/// The API server's answers to the agent, by kind (every attempt, retries included).
#[derive(Debug, Default)]
pub struct ApiResponses {
    /// 429 Too Many Requests (API Priority and Fairness, or a rate limit in between).
    pub throttled: AtomicU64,
    /// 5xx.
    pub server_errors: AtomicU64,
    /// 4xx other than 429.
    pub client_errors: AtomicU64,
    /// No answer: connection refused or cut, TLS, timeouts.
    pub transport_errors: AtomicU64,
    /// Unix seconds of the last warning logged (0: never).
    last_warning: AtomicU64,
}

impl ApiResponses {
    fn record(&self, outcome: Result<StatusCode, &BoxError>) {
        let (counter, what) = match outcome {
            Ok(StatusCode::TOO_MANY_REQUESTS) => {
                (&self.throttled, "the API server is throttling the agent (429); the client waits and retries")
            }
            Ok(s) if s.is_server_error() => (&self.server_errors, "the API server answered with a server error"),
            Ok(s) if s.is_client_error() => {
                self.client_errors.fetch_add(1, Ordering::Relaxed);
                return; // a 404 or 409 is an answer the caller handles
            }
            Ok(_) => return,
            Err(_) => (&self.transport_errors, "the API server did not answer"),
        };
        let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_SECS
            && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            match outcome {
                Ok(status) => tracing::warn!(status = status.as_u16(), total, "{what}; counting goes on"),
                Err(e) => tracing::warn!(error = %e, total, "{what}; counting goes on"),
            }
        }
    }
}

/// A client for `config` whose every answer is counted in `responses`. The retry policy is
/// kube's own (429, 503 and 504, honouring `Retry-After`) when the configuration asks for it,
/// as it does by default; it sits outside the count, so each attempt is counted.
///
/// # Errors
/// When kube cannot build its client from `config` (TLS material, proxy).
pub fn client(mut config: kube::Config, responses: Arc<ApiResponses>) -> Result<kube::Client, kube::Error> {
    let retry = std::mem::replace(&mut config.default_retry, false);
    // The retry layer clones the service; kube's stack is boxed (not `Clone`): a buffer makes
    // a cloneable handle to it.
    let counted = ClientBuilder::try_from(config)?.with_layer(&BufferLayer::new(BUFFER)).with_layer(&Count(responses));
    Ok(if retry { counted.with_layer(&RetryLayer::new(RetryPolicy::server_retry())).build() } else { counted.build() })
}

/// Counts the answers of the service it wraps.
#[derive(Clone)]
struct Count(Arc<ApiResponses>);

impl<S> Layer<S> for Count {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner, responses: Arc::clone(&self.0) }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    responses: Arc<ApiResponses>,
}

impl<S, B> Service<Request<Body>> for Counted<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let responses = Arc::clone(&self.responses);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            responses.record(result.as_ref().map(Response::status));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let r = ApiResponses::default();
        for status in [200, 201, 404, 409, 429, 429, 500, 503] {
            r.record(Ok(StatusCode::from_u16(status).expect("status")));
        }
        r.record(Err(&BoxError::from("connection refused")));
        assert_eq!(r.throttled.load(Ordering::Relaxed), 2);
        assert_eq!(r.server_errors.load(Ordering::Relaxed), 2);
        assert_eq!(r.client_errors.load(Ordering::Relaxed), 2);
        assert_eq!(r.transport_errors.load(Ordering::Relaxed), 1);
    }
}
