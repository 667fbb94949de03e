//! File-watch triggers: one inotify watcher per enabled watch trigger, rebuilt when triggers
//! change; changes are coalesced per file for the trigger's debounce, then offered to it.

use crate::Shared;
use notify::{EventKind, RecursiveMode, Watcher};
use owl_core::trigger::{watch_matches, FsEvent, On, Trigger};
use owl_store::FireTrigger;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

fn kinds(kind: &EventKind) -> Option<FsEvent> {
    use notify::event::{ModifyKind, RenameMode};
    match kind {
        EventKind::Create(_) => Some(FsEvent::Created),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(FsEvent::Created),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Some(FsEvent::Deleted),
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(_) => Some(FsEvent::Modified),
        EventKind::Remove(_) => Some(FsEvent::Deleted),
        _ => None,
    }
}

pub(crate) async fn watch_loop(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let triggers: Vec<Trigger> = match s.store.list_triggers().await {
            Ok(all) => all.into_iter().filter(|t| t.enabled && matches!(t.spec.on, On::Watch { .. })).collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list watch triggers");
                vec![]
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, PathBuf, FsEvent)>();
        let mut watchers = vec![];
        for (i, t) in triggers.iter().enumerate() {
            let On::Watch { path, .. } = &t.spec.on else { continue };
            let tx = tx.clone();
            let made = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if let Some(kind) = kinds(&ev.kind) {
                        for p in ev.paths {
                            let _ = tx.send((i, p, kind));
                        }
                    }
                }
            })
            .and_then(|mut w| w.watch(std::path::Path::new(path), RecursiveMode::Recursive).map(|_| w));
            match made {
                Ok(w) => watchers.push(w),
                Err(e) => {
                    tracing::error!(trigger = %t.spec.name, path = %path, error = %e, "cannot watch; fix the path and re-enable the trigger")
                }
            }
        }
        let mut pending: HashMap<(usize, PathBuf), (FsEvent, Instant)> = HashMap::new();
        loop {
            let next = pending.values().map(|(_, at)| *at).min();
            tokio::select! {
                Some((i, path, kind)) = rx.recv() => {
                    let On::Watch { debounce_ms, .. } = &triggers[i].spec.on else { continue };
                    let due = Instant::now() + Duration::from_millis(*debounce_ms);
                    pending.entry((i, path)).and_modify(|e| *e = (e.0.merge(kind), due)).or_insert((kind, due));
                }
                _ = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    let ready: Vec<(usize, PathBuf)> = pending.iter().filter(|(_, (_, at))| *at <= now).map(|(k, _)| k.clone()).collect();
                    for key in ready {
                        let (kind, _) = pending.remove(&key).expect("listed above");
                        offer(&s, &triggers[key.0], &key.1, kind).await;
                    }
                }
                _ = s.watches_changed.notified() => break,
                _ = stop.changed() => return,
            }
        }
        drop(watchers);
    }
}

async fn offer(s: &Shared, t: &Trigger, path: &std::path::Path, kind: FsEvent) {
    let On::Watch { events, glob, .. } = &t.spec.on else { return };
    if !watch_matches(events, glob.as_deref(), path, kind) {
        return;
    }
    let mut spec = crate::triggers::task_for(t, 1);
    spec.env.insert("OWL_WATCH_PATH".into(), path.display().to_string());
    spec.env.insert("OWL_WATCH_EVENT".into(), kind.as_str().into());
    let now = s.clock.now();
    let source = format!("fs:{}:{}:{}", kind.as_str(), path.display(), now.0);
    match s.store.fire_trigger(FireTrigger { trigger_id: t.id, source, task: Ok(spec), now }).await {
        Ok(r) => crate::triggers::announce(s, &r),
        Err(e) => tracing::error!(trigger = %t.spec.name, error = %e, "cannot record a file event"),
    }
}
