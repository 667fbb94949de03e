//! Budgets: every scope's limits and spend, run-time limits, and the prices owl charges at.

use serde::{Deserialize, Serialize};

pub use owl_core::budget::{BudgetStatus, LimitOverride, WindowReading, WindowShare, WindowState};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetList {
    pub budgets: Vec<BudgetStatus>,
}

/// One model's price as owl charges it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PriceView {
    pub model: String,
    /// USD per million tokens.
    pub input: f64,
    pub output: f64,
    pub cached: Option<f64>,
    /// `config` (`[prices]`) or `table` (the shipped snapshot).
    pub source: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PriceList {
    /// The date of the shipped table's snapshot.
    pub table_date: String,
    pub prices: Vec<PriceView>,
}
