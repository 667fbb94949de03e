//! Groups on the wire: setting a group's limit, and the view of its load.

use owl_core::GroupInfo;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGroup {
    /// At most this many tasks of the group at once; `null` removes the limit. Required, so a
    /// body that forgets it cannot lift a limit by accident.
    #[serde(deserialize_with = "required_nullable")]
    #[schema(required = true, minimum = 1, maximum = 1000000)]
    pub parallel: Option<u32>,
}

/// The largest group limit accepted (the schema's `maximum` says the same).
pub const MAX_GROUP_PARALLEL: u32 = 1_000_000;

/// Reads an `Option` field that must be present (`null` is a value, absence an error).
fn required_nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    pub parallel: Option<u32>,
    pub running: u64,
    pub queued: u64,
}

impl From<GroupInfo> for GroupView {
    fn from(g: GroupInfo) -> Self {
        GroupView { name: g.name, parallel: g.parallel, running: g.running, queued: g.queued }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}
