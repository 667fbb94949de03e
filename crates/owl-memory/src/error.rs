//! What can go wrong with memory, by kind, so callers (the API, the agent tools) answer each
//! the right way without reading messages.

/// A memory operation's failure.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MemoryError {
    /// The caller's input is refused; `field` names what to fix.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The operation needs the embedding model, which is not available; says why and how.
    #[error("{0}")]
    NoModel(String),
    /// The database, the index or the model failed.
    #[error("{0}")]
    Failed(String),
}

impl MemoryError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        MemoryError::Invalid { field, message: message.into() }
    }
}

/// The storage layers below report text; at the public boundary that is a failure.
impl From<String> for MemoryError {
    fn from(e: String) -> Self {
        MemoryError::Failed(e)
    }
}
