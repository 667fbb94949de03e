//! The backend conformance suite: one behavioural test per rule of the [`Store`] contract.
//!
//! A backend runs it with [`conformance_tests!`](crate::conformance_tests), giving an async
//! expression that builds a fresh store. The cases panic on a broken rule.

use crate::*;
use owl_core::lifecycle::RetryPolicy;
use owl_core::task::Status;
use owl_core::{Command, RunOutcome, TaskId, TaskSpec, TaskState, Timestamp, WaitReason};
use std::sync::Arc;
use std::time::Duration;

mod budget;
mod insights;
mod notify;
mod queue;
mod records;
mod schedules;
mod team;
mod triggers;

pub use budget::*;
pub use insights::*;
pub use notify::*;
pub use queue::*;
pub use records::*;
pub use schedules::*;
pub use team::*;
pub use triggers::*;

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an async expression
/// evaluating to `(Arc<dyn Store>, guard)`; the guard (e.g. a temp dir) lives for the test.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            submit_then_get_round_trips_the_spec,
            a_batch_round_trips_every_field_of_each_item,
            idempotency_key_returns_the_existing_task,
            a_batch_with_an_unknown_dependency_stores_nothing,
            batch_items_can_depend_on_each_other,
            claim_takes_highest_priority_then_oldest,
            claim_respects_group_parallel_limits,
            delayed_tasks_wait_until_due,
            dependents_wait_and_start_after_success,
            a_failed_dependency_fails_its_dependents_by_name,
            depending_on_an_already_failed_task_fails_at_once,
            cancel_before_start_cascades,
            cancel_of_a_running_task_is_a_request,
            a_stale_completion_is_refused,
            failures_retry_with_backoff_until_attempts_run_out,
            rescue_requeues_without_using_an_attempt,
            a_cancel_requested_of_a_lost_attempt_is_honoured_at_rescue,
            crash_rescues_are_capped,
            heartbeat_extends_leases_and_reports_lost_ones,
            retry_revives_dependents_that_failed_because_of_it,
            runs_record_every_attempt,
            list_filters_by_status_group_label_and_pages,
            list_filters_by_kind_schedule_and_creation_time,
            concurrent_submits_are_all_stored,
            nodes_keep_their_last_report_and_count_their_running_tasks,
            schedules_are_created_listed_and_names_are_unique,
            a_task_keeps_its_origin_and_a_schedule_its_maker,
            a_slot_fires_once_even_when_a_pass_is_replayed,
            a_queued_slot_is_claimed_once,
            history_shows_every_slot_with_its_task_status,
            a_schedule_remembers_its_last_success,
            a_schedule_remembers_when_it_was_resumed,
            a_claim_says_since_when_the_task_was_queued,
            a_trigger_source_fires_once_within_its_rate_limit,
            finished_tasks_are_walked_in_order_by_cursor,
            task_inputs_round_trip,
            transcripts_append_in_order_per_owner,
            an_approval_is_bound_to_its_call_decided_once_and_used_once,
            usage_sums_by_agent_and_model,
            chats_are_created_and_listed,
            repository_tasks_keep_their_git_record_until_retention,
            run_samples_are_kept_per_scope_newest_first,
            anomalies_are_recorded_once_and_listed_newest_first,
            notification_channels_and_rules_are_checked_stored_and_removed,
            a_notice_is_written_once_per_channel_and_claimed_by_one_sender,
            failed_deliveries_retry_then_become_dead_letters,
            a_paused_channel_holds_its_deliveries_until_resumed,
            a_digest_is_claimed_as_one_batch_and_counted_apart,
            a_reservation_fits_every_limit_or_is_not_written,
            a_settle_may_charge_other_scopes_than_were_reserved,
            concurrent_reservations_never_pass_a_limit,
            open_reservations_of_a_task_settle_at_their_estimate,
            a_paused_task_waits_on_its_budget_and_wakes_when_raised,
            reservations_nothing_will_settle_are_settled_and_open_ones_always_count,
            a_message_is_stored_once_per_key_and_delivered_once_to_each_recipient,
            concurrent_reads_never_hand_one_delivery_out_twice,
            agent_state_is_versioned_and_a_stale_write_is_refused
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

pub type DynStore = Arc<dyn Store>;

const T0: Timestamp = Timestamp(1_800_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

pub fn spec(cmd: &str) -> TaskSpec {
    TaskSpec::new(Command::Shell(cmd.into()))
}

async fn add(s: &DynStore, spec: TaskSpec) -> TaskId {
    s.submit(vec![NewTask::new(spec)], T0).await.unwrap()[0].id
}

async fn claim(s: &DynStore, now: Timestamp, limit: usize) -> Vec<ClaimedTask> {
    s.claim(Claim { node: "n1".into(), now, lease: LEASE, limit }).await.unwrap()
}

fn done(id: TaskId, attempt: u32, outcome: RunOutcome, now: Timestamp) -> Completion {
    Completion { id, attempt, outcome, exit_code: None, signal: None, now, policy: RetryPolicy::default(), jitter: 0.0 }
}

fn fail(id: TaskId, attempt: u32, now: Timestamp) -> Completion {
    Completion { exit_code: Some(1), ..done(id, attempt, RunOutcome::Failed { exit_code: Some(1), signal: None, error: None }, now) }
}

async fn status(s: &DynStore, id: TaskId) -> Status {
    s.get(id).await.unwrap().state.status()
}

pub async fn a_claim_says_since_when_the_task_was_queued(s: DynStore) {
    let ready = add(&s, spec("echo now")).await;
    let mut later = spec("echo later");
    later.run_at = Some(T0.plus(Duration::from_secs(100)));
    let delayed = add(&s, later).await;
    let c = claim(&s, T0.plus(Duration::from_secs(5)), 5);
    let c = c.await;
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].id, c[0].queued_since), (ready, T0), "a task submitted ready is queued from its submit");
    let due = T0.plus(Duration::from_secs(120));
    s.promote_due(due).await.unwrap();
    let c = claim(&s, due.plus(Duration::from_secs(3)), 5).await;
    assert_eq!((c[0].id, c[0].queued_since), (delayed, due), "a delayed task is queued from when it was made due");
}
