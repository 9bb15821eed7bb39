//! A transport layer that counts the JSON-RPC calls an [`crate::EthChain`] sends to its node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use alloy::rpc::json_rpc::RequestPacket;
use tower::{Layer, Service};

/// Counts every JSON-RPC call passing through (each call of a batch counts), failed ones
/// included.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountingLayer {
    pub(crate) calls: Arc<AtomicU64>,
    pub(crate) by_method: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl<S> Layer<S> for CountingLayer {
    type Service = CountingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountingService {
            inner,
            calls: self.calls.clone(),
            by_method: self.by_method.clone(),
        }
    }
}

/// The service of [`CountingLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CountingService<S> {
    inner: S,
    calls: Arc<AtomicU64>,
    by_method: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl<S> Service<RequestPacket> for CountingService<S>
where
    S: Service<RequestPacket>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        let n = match &req {
            RequestPacket::Single(_) => 1,
            RequestPacket::Batch(b) => b.len() as u64,
        };
        self.calls.fetch_add(n, Ordering::Relaxed);
        let mut by = self
            .by_method
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in req.method_names() {
            *by.entry(m.to_owned()).or_default() += 1;
        }
        drop(by);
        self.inner.call(req)
    }
}
