//! Dependency checks that need no store: references inside one batch, and cycles among them.
//!
//! A task can only depend on tasks that already exist or on earlier-or-later items of the same
//! batch, so cycles can only arise inside a batch; they are found here before anything is written.

use crate::task::TaskId;

/// One dependency of a task being submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DepRef {
    /// A task that already exists.
    Existing(TaskId),
    /// Another item of the same batch, by its position.
    Batch(usize),
}

/// Checks batch-internal references: in range, not self, no cycles. On a cycle, returns the
/// positions that form it in order, e.g. `[0, 2, 0]`.
pub fn check_batch(deps: &[Vec<DepRef>]) -> Result<(), BatchDepError> {
    let n = deps.len();
    for (i, ds) in deps.iter().enumerate() {
        for d in ds {
            if let DepRef::Batch(j) = *d {
                if j >= n {
                    return Err(BatchDepError::OutOfRange { item: i, reference: j, len: n });
                }
                if j == i {
                    return Err(BatchDepError::Cycle(vec![i, i]));
                }
            }
        }
    }
    // Iterative depth-first search with colours; reconstruct the cycle from the stack.
    let mut colour = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    for start in 0..n {
        if colour[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let edges: Vec<usize> = deps[node].iter().filter_map(|d| if let DepRef::Batch(j) = d { Some(*j) } else { None }).collect();
            if *next < edges.len() {
                let to = edges[*next];
                *next += 1;
                match colour[to] {
                    0 => {
                        colour[to] = 1;
                        stack.push((to, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        cycle.push(to);
                        return Err(BatchDepError::Cycle(cycle));
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// An order in which batch items can be inserted so each item's batch dependencies come first.
/// Call only after `check_batch` succeeded.
pub fn insertion_order(deps: &[Vec<DepRef>]) -> Vec<usize> {
    let n = deps.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let before = order.len();
        for i in 0..n {
            if !done[i] && deps[i].iter().all(|d| !matches!(d, DepRef::Batch(j) if !done[*j])) {
                done[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            break; // only reachable with a cycle, which check_batch refuses
        }
    }
    order
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchDepError {
    #[error("tasks[{item}].after refers to batch item {reference}, but the batch has only {len} items (positions start at 0)")]
    OutOfRange { item: usize, reference: usize, len: usize },
    #[error("dependency cycle between batch items {}: a task cannot wait on itself", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<usize>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use DepRef::*;

    #[test]
    fn accepts_a_dag_and_orders_it() {
        let deps = vec![vec![Batch(2)], vec![Existing(TaskId(9))], vec![Batch(1)]];
        check_batch(&deps).unwrap();
        assert_eq!(insertion_order(&deps), vec![1, 2, 0]);
    }

    #[test]
    fn finds_cycles_and_names_them() {
        let deps = vec![vec![Batch(1)], vec![Batch(2)], vec![Batch(0)]];
        assert_eq!(check_batch(&deps), Err(BatchDepError::Cycle(vec![0, 1, 2, 0])));
        assert_eq!(check_batch(&[vec![Batch(0)]]), Err(BatchDepError::Cycle(vec![0, 0])));
    }

    #[test]
    fn refuses_out_of_range_references() {
        let e = check_batch(&[vec![Batch(5)]]).unwrap_err();
        assert!(e.to_string().contains("only 1 items"), "{e}");
    }
}
