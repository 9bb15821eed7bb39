//! A server on a fresh database of the shared test cluster, and a client that checks every
//! answer against the served OpenAPI document.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_store::testkit::TestCluster;
use pg_store::PgStore;
use serde_json::Value;
use swap_core::{DriverConfig, Rail};
use swap_engine::Engine;
use xswap_api::{ApiDb, AppState, Metrics, ServerConfig};

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A running server and what a test needs around it.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// A valid key.
    pub key: String,
    pub db: ApiDb,
    pub store: Arc<PgStore>,
    pub engine: Arc<Engine>,
    pub url: String,
    /// The served OpenAPI document.
    pub doc: Value,
    /// Error answers checked against the document (a test asserts some were).
    pub errors_checked: AtomicUsize,
    _cluster: Arc<TestCluster>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The key the tests' stores seal their secrets with, as the server's (from its seed).
pub fn store_key() -> swap_core::store::StoreKey {
    swap_core::store::StoreKey::from_bytes(&[0x5e; 32])
}

/// The store (its secrets sealed with [`store_key`]) and API tables on a new database of the
/// shared cluster.
pub async fn database(name: &str) -> (Arc<TestCluster>, String, Arc<PgStore>) {
    database_with(name, Some(store_key())).await
}

/// [`database`] with the store's secrets sealed with `key` (`None`: in clear).
pub async fn database_with(
    name: &str,
    key: Option<swap_core::store::StoreKey>,
) -> (Arc<TestCluster>, String, Arc<PgStore>) {
    let cluster = TestCluster::shared();
    let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
    let url = cluster
        .create_database(&format!("api_{name}_{n}_{}", std::process::id()))
        .await;
    let options = pg_store::PgOptions {
        key,
        ..Default::default()
    };
    let store = Arc::new(
        PgStore::connect_with(&url, options)
            .await
            .expect("pg store"),
    );
    (cluster, url, store)
}

/// A server for `engine` (on `store`, in database `url`) with `config`.
pub async fn serve(
    cluster: Arc<TestCluster>,
    url: String,
    store: Arc<PgStore>,
    engine: Arc<Engine>,
    config: ServerConfig,
) -> Api {
    serve_with(
        cluster,
        url,
        store,
        engine,
        config,
        Arc::new(Metrics::default()),
    )
    .await
}

/// [`serve`] with `metrics` (which the engine's store may record into too).
pub async fn serve_with(
    cluster: Arc<TestCluster>,
    url: String,
    store: Arc<PgStore>,
    engine: Arc<Engine>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
) -> Api {
    let db = ApiDb::connect(&url, 4, metrics.clone())
        .await
        .expect("api db")
        .with_key(Some(store_key()));
    let (_, key) = db.create_key("test").await.expect("key");
    let state = Arc::new(AppState {
        engine: engine.clone(),
        db: db.clone(),
        metrics,
        config,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        xswap_api::serve(listener, state, std::future::pending())
            .await
            .unwrap();
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let doc: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .expect("the served OpenAPI document parses as JSON");
    Api {
        base,
        client,
        key,
        db,
        store,
        engine,
        url,
        doc,
        errors_checked: AtomicUsize::new(0),
        _cluster: cluster,
        task,
    }
}

/// A server whose engine has no rails (no nodes): everything but creating a swap.
pub async fn without_nodes(name: &str, config: ServerConfig) -> Api {
    let (cluster, url, store) = database(name).await;
    let engine = Engine::new(
        name,
        store.clone(),
        Vec::<Arc<dyn Rail>>::new(),
        swap_net::Identity::generate().unwrap(),
        DriverConfig::default(),
    );
    serve(cluster, url, store, engine, config).await
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The error code (panics when this is not an error).
    pub fn code(&self) -> &str {
        assert!(self.status >= 400, "not an error: {self:?}");
        self.body["code"].as_str().unwrap()
    }
}

impl Api {
    /// Sends `req` (made for the operation `method template`) and checks the answer against
    /// the document: the status is listed for the operation (or covered by `default`), and
    /// an error's body matches `ApiError`.
    pub async fn call(&self, method: &str, template: &str, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        if op.is_object() {
            let responses = &op["responses"];
            assert!(
                responses.get(status.to_string()).is_some() || responses.get("default").is_some(),
                "{method} {template}: status {status} is not in the document"
            );
        }
        if status >= 400 {
            assert!(
                headers
                    .get("content-type")
                    .is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
                "{method} {template} {status}: an error must be JSON: {text}"
            );
            check_error(&self.doc, &body);
            self.errors_checked.fetch_add(1, Ordering::SeqCst);
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }
}

/// `body` matches the document's `ApiError` schema: an object with exactly its properties,
/// each of its type, the required ones present; and the code is stable snake_case.
pub fn check_error(doc: &Value, body: &Value) {
    let schema = &doc["components"]["schemas"]["ApiError"];
    assert_eq!(schema["type"], "object", "ApiError schema: {schema}");
    let props = schema["properties"]
        .as_object()
        .expect("ApiError properties");
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    for req in schema["required"].as_array().expect("required") {
        let name = req.as_str().unwrap();
        assert!(obj.contains_key(name), "error body lacks {name}: {body}");
    }
    for (k, v) in obj {
        let p = props
            .get(k)
            .unwrap_or_else(|| panic!("error body has {k}, not in the schema: {body}"));
        assert_eq!(p["type"], "string", "property {k} of ApiError");
        assert!(v.is_string(), "{k} must be a string: {body}");
    }
    let code = obj["code"].as_str().unwrap();
    assert!(
        !code.is_empty()
            && code.starts_with(|c: char| c.is_ascii_lowercase())
            && code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "code {code:?} is not snake_case"
    );
}

/// Reads SSE events from `res` until `done` says enough or `timeout` passes: (id, data).
pub async fn read_events(
    res: &mut reqwest::Response,
    timeout: Duration,
    mut done: impl FnMut(&[(i64, Value)]) -> bool,
) -> Vec<(i64, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&out) {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no more events within {timeout:?}; got {out:?}"))
            .expect("stream")
            .expect("stream ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data, mut name) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<i64>().unwrap());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                assert_eq!(name.as_deref(), Some("swap_state"));
                assert_eq!(data["event_id"], id);
                out.push((id, data));
            }
        }
    }
    out
}
