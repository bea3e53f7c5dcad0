//! Folds a group commit's operations into each key's final state, so a backend can write a batch
//! with one set-based statement per operation type (one row per key).

use std::collections::HashMap;

use crate::Op;

/// A batch's net effect. Every key appears once, with the revision of the request that last
/// touched it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Folded<'a> {
    pub puts: Vec<(&'a str, &'a str, u64, &'a [u8])>,
    /// Creations that do nothing when the key exists in the store.
    pub creates: Vec<(&'a str, &'a str, u64, &'a [u8])>,
    pub deletes: Vec<(&'a str, &'a str, u64)>,
    /// Content put, with the revision of the request that last put it.
    pub contents: Vec<(&'a str, u64, &'a [u8])>,
    /// Content to delete unless stored at a revision after the one given.
    pub content_drops: Vec<(&'a str, u64)>,
    /// Counters that end the batch present: `reset` when the batch deleted them first (the value
    /// becomes `add`), else `add` is added to the stored value.
    pub counters: Vec<CounterWrite<'a>>,
    pub counter_deletes: Vec<(&'a str, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterWrite<'a> {
    pub name: &'a str,
    pub revision: u64,
    pub add: i64,
    pub reset: bool,
}

enum ObjectState<'a> {
    Put(u64, &'a [u8]),
    /// Put only if the store does not hold the key (nothing earlier in the batch touched it).
    Create(u64, &'a [u8]),
    Deleted(u64),
}

enum ContentState<'a> {
    Put(u64, &'a [u8]),
    /// Delete unless written after this revision (nothing in the batch puts it afterwards).
    Drop(u64),
}

enum CounterState {
    Add {
        revision: u64,
        add: i64,
        reset: bool,
    },
    Deleted(u64),
}

/// Folds `requests` (each a list of operations and the revision it was given), in order.
pub fn fold<'a>(requests: impl IntoIterator<Item = (u64, &'a [Op])>) -> Folded<'a> {
    let mut objects: HashMap<(&str, &str), ObjectState> = HashMap::new();
    let mut counters: HashMap<&str, CounterState> = HashMap::new();
    let mut contents: HashMap<&str, ContentState> = HashMap::new();
    for (revision, ops) in requests {
        for op in ops {
            match op {
                Op::Put { kind, name, doc } => {
                    objects.insert((kind, name), ObjectState::Put(revision, doc));
                }
                Op::PutIfAbsent { kind, name, doc } => {
                    let next = match objects.get(&(kind.as_str(), name.as_str())) {
                        None => ObjectState::Create(revision, doc),
                        // Deleted earlier in the batch: absent now, so it is created.
                        Some(ObjectState::Deleted(_)) => ObjectState::Put(revision, doc),
                        // Present (put or being created) earlier in the batch: nothing to do.
                        Some(_) => continue,
                    };
                    objects.insert((kind, name), next);
                }
                Op::Delete { kind, name } => {
                    objects.insert((kind, name), ObjectState::Deleted(revision));
                }
                // Content is addressed by digest, so a put after a drop stores the same body
                // whether or not the drop happened.
                Op::PutContent { digest, body } => {
                    contents.insert(digest, ContentState::Put(revision, body));
                }
                Op::DropContent {
                    digest,
                    unless_written_after,
                } => {
                    let next = match contents.get(digest.as_str()) {
                        // Put later than the drop allows: the drop does nothing.
                        Some(ContentState::Put(put, _)) if put > unless_written_after => continue,
                        // Put earlier in the batch at a revision the drop allows: whatever the
                        // store held before was older still, so the drop deletes it.
                        Some(ContentState::Put(..)) | None => *unless_written_after,
                        Some(ContentState::Drop(earlier)) => (*earlier).max(*unless_written_after),
                    };
                    contents.insert(digest, ContentState::Drop(next));
                }
                Op::Increment { counter, by } => {
                    let next = match counters.remove(counter.as_str()) {
                        None => CounterState::Add {
                            revision,
                            add: *by,
                            reset: false,
                        },
                        Some(CounterState::Add { add, reset, .. }) => CounterState::Add {
                            revision,
                            add: add + by,
                            reset,
                        },
                        Some(CounterState::Deleted(_)) => CounterState::Add {
                            revision,
                            add: *by,
                            reset: true,
                        },
                    };
                    counters.insert(counter, next);
                }
                Op::DeleteCounter { counter } => {
                    counters.insert(counter, CounterState::Deleted(revision));
                }
                // Chained by the backend in request order, beside the folded writes.
                Op::Audit(_) => {}
            }
        }
    }
    let mut folded = Folded::default();
    for ((kind, name), state) in objects {
        match state {
            ObjectState::Put(revision, doc) => folded.puts.push((kind, name, revision, doc)),
            ObjectState::Create(revision, doc) => folded.creates.push((kind, name, revision, doc)),
            ObjectState::Deleted(revision) => folded.deletes.push((kind, name, revision)),
        }
    }
    for (name, state) in counters {
        match state {
            CounterState::Add {
                revision,
                add,
                reset,
            } => folded.counters.push(CounterWrite {
                name,
                revision,
                add,
                reset,
            }),
            CounterState::Deleted(revision) => folded.counter_deletes.push((name, revision)),
        }
    }
    for (digest, state) in contents {
        match state {
            ContentState::Put(revision, body) => folded.contents.push((digest, revision, body)),
            ContentState::Drop(revision) => folded.content_drops.push((digest, revision)),
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(name: &str, doc: &str) -> Op {
        Op::Put {
            kind: "K".into(),
            name: name.into(),
            doc: doc.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_last_write_to_a_key_wins_with_its_request_revision() {
        let first = [put("a", "1"), put("b", "1")];
        let second = [
            put("a", "2"),
            Op::Delete {
                kind: "K".into(),
                name: "b".into(),
            },
        ];
        let mut folded = fold([(7, &first[..]), (8, &second[..])]);
        folded.puts.sort();
        assert_eq!(folded.puts, vec![("K", "a", 8, &b"2"[..])]);
        assert_eq!(folded.deletes, vec![("K", "b", 8)]);
    }

    #[test]
    fn content_dropped_in_a_batch_survives_a_later_put_and_a_put_after_the_drops_limit() {
        let put = |digest: &str| Op::PutContent {
            digest: digest.into(),
            body: b"body".to_vec(),
        };
        let drop = |digest: &str, unless_written_after| Op::DropContent {
            digest: digest.into(),
            unless_written_after,
        };
        // a: put at 5, dropped unless written after 5: deleted. b: put at 5, dropped unless
        // written after 4: kept (put). c: dropped, then put again: put. d: two drops: the
        // more permissive limit.
        let first = [put("a"), put("b"), drop("c", 3), drop("d", 2)];
        let second = [drop("a", 5), drop("b", 4), put("c"), drop("d", 4)];
        let mut folded = fold([(5, &first[..]), (6, &second[..])]);
        folded.contents.sort();
        folded.content_drops.sort();
        assert_eq!(
            folded.contents,
            vec![("b", 5, &b"body"[..]), ("c", 6, &b"body"[..])]
        );
        assert_eq!(folded.content_drops, vec![("a", 5), ("d", 4)]);
    }

    #[test]
    fn a_counter_deleted_then_incremented_restarts_from_the_later_increments() {
        let inc = |by| Op::Increment {
            counter: "c".into(),
            by,
        };
        let ops = [
            inc(5),
            Op::DeleteCounter {
                counter: "c".into(),
            },
            inc(2),
            inc(1),
        ];
        let folded = fold([(3, &ops[..])]);
        assert_eq!(
            folded.counters,
            vec![CounterWrite {
                name: "c",
                revision: 3,
                add: 3,
                reset: true
            }]
        );
        let ops = [inc(5), inc(1)];
        let folded = fold([(4, &ops[..])]);
        assert_eq!(folded.counters[0].add, 6);
        assert!(!folded.counters[0].reset);
        let ops = [
            inc(5),
            Op::DeleteCounter {
                counter: "c".into(),
            },
        ];
        assert_eq!(fold([(5, &ops[..])]).counter_deletes, vec![("c", 5)]);
    }
}
