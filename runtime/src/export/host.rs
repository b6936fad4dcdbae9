//! A `wasi:http` host for exported components: wasmtime with
//! `wasmtime-wasi-http`, the same way `wasmtime serve` runs one.
//!
//! Each request gets a fresh instance (from a pre-instantiated component)
//! with a deadline and a memory cap. The component is granted nothing beyond
//! `wasi:http`'s incoming side: no filesystem, environment, network or
//! outgoing HTTP (a request for one fails with `HttpRequestDenied`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(10);

/// Limits for one request's instance.
#[derive(Clone, Copy, Debug)]
pub struct HostLimits {
    /// Wall-clock budget of one request.
    pub deadline: Duration,
    /// Linear memory of all the instance's memories together.
    pub max_memory_bytes: usize,
    /// Requests in flight at once (pooled instance slots); more wait for a slot.
    pub max_concurrent_instances: u32,
}

impl Default for HostLimits {
    /// 10 s, 256 MiB, 128 requests in flight.
    fn default() -> Self {
        HostLimits {
            deadline: Duration::from_secs(10),
            max_memory_bytes: 256 << 20,
            max_concurrent_instances: 128,
        }
    }
}

/// Refuses every outgoing request: an exported model has no business calling out.
struct NoOutgoing;

impl WasiHttpHooks for NoOutgoing {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Store state of one request.
struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutgoing,
    limits: StoreLimits,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The handler a component exports, pre-instantiated.
enum Handler {
    /// `wasi:http/incoming-handler@0.2.x` (WASI 0.2: the default export, `jco serve`).
    P2(ProxyPre<RequestState>),
    /// `wasi:http/handler@0.3.x` (WASI 0.3: a component built on `spin-sdk` 7).
    P3(ServicePre<RequestState>),
}

/// The export name of WASI 0.3's HTTP handler.
const P3_HANDLER: &str = "wasi:http/handler@0.3";

/// A compiled `wasi:http` component, ready to serve.
pub struct WasiHttpHost {
    handler: Handler,
    engine: Engine,
    limits: HostLimits,
    /// One per pooled instance slot, held until the instance is dropped.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Why a component cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// It does not compile or does not link as a `wasi:http/proxy`.
    #[error(
        "this is not a wasi:http component this host can run: {0:#}; expected a component \
         exporting wasi:http/incoming-handler@0.2.x that imports only WASI 0.2, or \
         wasi:http/handler@0.3.x that imports only WASI 0.2 and 0.3"
    )]
    Component(wasmtime::Error),
    /// The socket failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

impl WasiHttpHost {
    /// Compiles `bytes` and links it against WASI 0.2 and `wasi:http` 0.2,
    /// or, for a component exporting WASI 0.3's handler, WASI 0.2 and 0.3.
    pub fn new(bytes: &[u8], limits: HostLimits) -> Result<Arc<Self>, HostError> {
        // WASI 0.3's handler is an async export, which needs the component
        // model's concurrency support; WASI 0.2's calls are plain and cheaper
        // without it (no guest task is created per call). A component this
        // cannot decode is left to `Component::new` to word the error.
        let p3 = super::spin::spin_handlers(bytes)
            .is_ok_and(|handlers| handlers.iter().any(|h| h.starts_with(P3_HANDLER)));
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(p3);
        config.wasm_component_model_async(p3);
        // A fresh instance per request: pooled slots make that cheap. One
        // export instantiates ~5 components (~10 core instances, 5 memories).
        let n = limits.max_concurrent_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n * 8)
            .total_core_instances(n * 16)
            .total_memories(n * 8)
            .total_tables(n * 16)
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(32)
            .max_memory_size(limits.max_memory_bytes);
        crate::engine::keep_resident(&mut pool);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(HostError::Component)?;
        let component = Component::new(&engine, bytes).map_err(HostError::Component)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(HostError::Component)?;
        let handler = if p3 {
            wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(HostError::Component)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(HostError::Component)?;
            linker
                .instantiate_pre(&component)
                .and_then(ServicePre::new)
                .map(Handler::P3)
        } else {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(HostError::Component)?;
            linker
                .instantiate_pre(&component)
                .and_then(ProxyPre::new)
                .map(Handler::P2)
        }
        .map_err(HostError::Component)?;
        // The deadline clock; it stops with the engine's last user.
        let weak = engine.weak();
        std::thread::spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(n as usize));
        Ok(Arc::new(WasiHttpHost {
            handler,
            engine,
            limits,
            slots,
        }))
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), HostError> {
        tokio::pin!(shutdown);
        loop {
            let (socket, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = &mut shutdown => return Ok(()),
            };
            let _ = socket.set_nodelay(true);
            let host = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let host = host.clone();
                    async move { Ok::<_, std::convert::Infallible>(host.handle(req).await) }
                });
                // A client that goes away mid-request is not the server's problem.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    }

    /// Runs one request in a fresh instance; a trap or a missing response
    /// becomes a 500 with an `{"error": ...}` body.
    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        match self.run(req).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!("exported component failed: {e:#}");
                let body = serde_json::json!({ "error": format!("the component failed: {e}") });
                hyper::Response::builder()
                    .status(500)
                    .header("content-type", "application/json")
                    .body(
                        Full::new(Bytes::from(body.to_string()))
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    )
                    .expect("a valid response")
            }
        }
    }

    async fn run(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
        match &self.handler {
            Handler::P2(pre) => self.run_p2(pre, req).await,
            Handler::P3(pre) => self.run_p3(pre, req).await,
        }
    }

    /// A store for one request: its memory cap and deadline set.
    fn store(&self) -> Store<RequestState> {
        let state = RequestState {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            hooks: NoOutgoing,
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.max_memory_bytes)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.limits.deadline.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store
    }

    async fn run_p2(
        &self,
        pre: &ProxyPre<RequestState>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = self.store();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = pre.clone();
        let slot = self.slots.clone().acquire_owned().await?;
        // The guest may keep running (streaming the body) after it has set
        // the response, so it runs in its own task.
        let task = tokio::spawn(async move {
            let _slot = slot;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(wasmtime::format_err!(
                "it answered with the error code {code:?}"
            )),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(wasmtime::format_err!("it never set a response")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(wasmtime::format_err!("its task failed: {e}")),
            },
        }
    }

    /// WASI 0.3: the handler returns the response; its body is read to the
    /// end inside the store's event loop (the guest writes it there), then
    /// sent whole.
    async fn run_p3(
        &self,
        pre: &ServicePre<RequestState>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
        let mut store = self.store();
        let _slot = self.slots.clone().acquire_owned().await?;
        let service = pre.instantiate_async(&mut store).await?;
        let (req, io) =
            wasmtime_wasi_http::p3::Request::from_http(&mut store.data_mut().hooks, req);
        let (parts, body) = store
            .run_concurrent(async |store| {
                let (answer, ()) = tokio::try_join!(
                    async {
                        let response = service.handle(store, req).await?.map_err(|code| {
                            wasmtime::format_err!("it answered with the error code {code:?}")
                        })?;
                        let response =
                            store.with(|store| response.into_http(store, async { Ok(()) }))?;
                        let (parts, body) = response.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map_err(|e| wasmtime::format_err!("its response body failed: {e:?}"))?
                            .to_bytes();
                        wasmtime::error::Ok((parts, body))
                    },
                    async {
                        io.await
                            .map_err(|e| wasmtime::format_err!("the request body failed: {e:?}"))
                    }
                )?;
                wasmtime::error::Ok(answer)
            })
            .await??;
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        Ok(hyper::Response::from_parts(parts, body))
    }
}
