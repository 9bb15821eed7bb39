//! The API server on a throwaway PostgreSQL cluster with one API key, for `scripts/api-fuzz`
//! (schemathesis): prints `<base url> <key>` on one line once it listens, then serves until
//! killed. Its engine has no nodes (readiness asks only the database; creating a swap answers
//! `offer_not_takeable` for any valid offer); the rate limit is out of the way. The database
//! holds a few swaps (negotiated, locking, finished) so that listing answers real pages, whose
//! swaps the fuzzer checks against the schema too.
#![allow(clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use pg_store::testkit::TestCluster;
use pg_store::PgStore;
use swap_core::store::conformance::sample_record;
use swap_core::{initiator, DriverConfig, Outcome, Rail, Role, SwapState, SwapStore};
use swap_engine::Engine;
use xswap_api::{ApiDb, AppState, Metrics, ServerConfig};

#[tokio::main]
async fn main() {
    let cluster = TestCluster::start();
    let url = cluster.create_database("fuzz").await;
    let store = Arc::new(PgStore::connect(&url).await.expect("store"));
    let metrics = Arc::new(Metrics::default());
    let db = ApiDb::connect(&url, 8, metrics.clone())
        .await
        .expect("api tables");
    let (_, key) = db.create_key("fuzz").await.expect("key");
    for n in 1..=5u8 {
        let r = sample_record(n, Role::Initiator);
        store
            .create(&r, &SwapState::initial(Role::Initiator))
            .await
            .expect("a sample swap");
        let next = match n {
            2 => Some(initiator::State::Locking),
            3 => Some(initiator::State::Done {
                outcome: Outcome::Swapped,
            }),
            _ => None,
        };
        if let Some(s) = next {
            store
                .append_state(&r.id(), 1, &SwapState::Initiator(s))
                .await
                .expect("a sample state");
        }
    }
    let engine = Engine::new(
        "fuzz",
        store,
        Vec::<Arc<dyn Rail>>::new(),
        swap_net::Identity::generate().expect("identity"),
        DriverConfig::default(),
    );
    let state = Arc::new(AppState {
        engine,
        db,
        metrics,
        config: ServerConfig {
            rate_per_sec: 1e6,
            burst: 1e6,
            ..Default::default()
        },
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    println!("http://{addr} {key}");
    std::io::stdout().flush().expect("stdout");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    xswap_api::serve(listener, state, stop)
        .await
        .expect("serve");
    drop(cluster);
}
