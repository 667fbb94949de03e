//! owl-memory: long-term memory for agents. Texts are embedded locally (candle, a
//! sentence-transformers BERT model), searched through a vector index and SQLite full-text
//! search, and the two rankings are fused.

mod bert;
pub mod db;
pub mod embed;
pub mod error;
pub mod index;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod pg;

pub use db::{Filter, MemoryItem, MemoryStore, NewMemory};
pub use error::MemoryError;
pub use memory::{bert_loader, Added, Hit, Loader, Memory, MemoryConfig, Query, RECALL_MARKER};
