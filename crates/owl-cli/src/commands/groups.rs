//! `owl groups`.

use crate::cli::GroupsAction;
use crate::client::Client;
use crate::output::{print_json, table};
use anyhow::Result;
use owl_api::{GroupList, GroupView, SetGroup};

pub async fn run(client: &Client, action: Option<GroupsAction>, json: bool) -> Result<()> {
    match action.unwrap_or(GroupsAction::Ls) {
        GroupsAction::Ls => {
            let list: GroupList = client.get("/v1/groups").await?;
            if json {
                print_json(&list);
            } else {
                let rows = list
                    .groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.name.clone(),
                            g.parallel.map(|p| p.to_string()).unwrap_or_else(|| "unlimited".into()),
                            g.running.to_string(),
                            g.queued.to_string(),
                        ]
                    })
                    .collect();
                table(&["GROUP", "PARALLEL", "RUNNING", "QUEUED"], rows);
            }
        }
        GroupsAction::Set { name, parallel, unlimited } => {
            let parallel = if unlimited { None } else { parallel };
            let g: GroupView = client.put(&format!("/v1/groups/{name}"), &SetGroup { parallel }).await?;
            if json {
                print_json(&g);
            } else {
                println!("group {}: parallel {}", g.name, g.parallel.map(|p| p.to_string()).unwrap_or_else(|| "unlimited".into()));
            }
        }
    }
    Ok(())
}
