use super::*;
use std::sync::Arc;

async fn make() -> (Arc<dyn owl_store::Store>, ()) {
    (Arc::new(testing::fresh_store().await) as Arc<dyn owl_store::Store>, ())
}

owl_store::conformance_tests!(make());
