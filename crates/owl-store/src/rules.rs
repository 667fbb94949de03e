//! The rules every backend keeps, checked once above the backends: the [`Store`](crate::Store)
//! trait's provided methods run them before calling the backend's own method, so a new
//! backend cannot skip them (the shape of atuin's record store, where `push` wraps
//! `push_batch`).

use crate::{NewTask, StoreError};
use owl_core::deps::{check_batch, DepRef};
use owl_core::validate::{check_spec, ValidationError};

/// A batch to submit: not empty, every spec valid, its dependencies acyclic. Needs no
/// database, so bad input costs no commit.
pub fn check_submit(batch: &[NewTask]) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Err(ValidationError::new("tasks", "the batch is empty; submit at least one task").into());
    }
    for (i, t) in batch.iter().enumerate() {
        check_spec(&t.spec).map_err(|e| {
            if batch.len() > 1 {
                ValidationError::new(format!("tasks[{i}].{}", e.field), e.message)
            } else {
                e
            }
        })?;
    }
    let refs: Vec<Vec<DepRef>> = batch
        .iter()
        .map(|t| t.spec.depends_on.iter().map(|d| DepRef::Existing(*d)).chain(t.batch_deps.iter().map(|i| DepRef::Batch(*i))).collect())
        .collect();
    check_batch(&refs).map_err(|e| ValidationError::new("tasks", e.to_string()))?;
    Ok(())
}

/// A group limit: a valid name, and at least 1 (`None` lifts it).
pub fn check_group(name: &str, parallel: Option<u32>) -> Result<(), StoreError> {
    owl_core::validate::check_name("name", "group", name)?;
    if parallel == Some(0) {
        return Err(ValidationError::new("parallel", "must be at least 1; to hold a group's tasks, cancel them or raise it later").into());
    }
    Ok(())
}
