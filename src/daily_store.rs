//! The daily points and their dead drops, kept on disk in single-node mode so that a dead drop the
//! server has acknowledged survives a crash (`kill -9`, power loss) and a restart.
//!
//! The registries stay in memory and answer every request from there; this store only follows them.
//! Changes go to a writer thread of its own, which applies every change waiting for it in one
//! transaction and one flush to disk (group commit), then tells the waiting registrations that their
//! entries are durable. A registration is answered only after that, so many concurrent registrations
//! share one flush, and no runtime thread ever waits for the disk.
//!
//! Entries are keyed by their expiry first: a new entry always expires last, so every write lands at
//! the end of the tree and a commit rewrites a few pages, not one per entry (points are random hashes,
//! and keyed by point each entry would dirty a page of its own). The entry an entry replaces is
//! deleted with it (usually near the end too: clients renew their points); expired entries are deleted
//! from the front. At start the newest entry per point and peer is the one that counts.
//!
//! The engine is redb: pure Rust (no C toolchain, quick to build), crash-safe by design (copy-on-write
//! B-trees with checksummed commits, no recovery log to replay), ACID transactions, and one file.
//! SQLite would do as well but brings a C build; fjall's LSM tree is built for write volumes far past
//! what dead drops need.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::clock::Millis;
use crate::data_dir::DataDir;
use crate::peer::AddressGroup;
use crate::protocol::Name;
use crate::registry::rendezvous::{DailyChange, DailyEntry};

/// (expiry, point, peer id) → the entry, encoded as CBOR.
const DAILY: TableDefinition<(Millis, &str, &str), &[u8]> = TableDefinition::new("daily");
/// The file in the data directory.
const FILE_NAME: &str = "daily.redb";
/// Jobs written in one transaction at most, so that a flood of changes still commits regularly.
const MAX_JOBS_PER_COMMIT: usize = 4096;
/// Expired entries deleted in one commit at most, so that a commit stays short.
const MAX_EXPIRED_PER_COMMIT: usize = 16_384;

#[derive(Debug, thiserror::Error)]
#[error("daily store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: redb::Error,
}

/// Changes could not be written; they live in memory only until the server stops.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the daily store could not write")]
pub struct NotWritten;

/// A handle to the writer thread; the thread ends when the last handle is gone.
#[derive(Clone, Debug)]
pub struct DailyStore {
    jobs: mpsc::Sender<Job>,
}

/// What the writer thread is asked to do.
enum Job {
    /// Write changes, and tell who waits once they are durable.
    Write {
        changes: Vec<DailyChange>,
        written: oneshot::Sender<Result<(), NotWritten>>,
    },
    /// Delete the entries that expired by then.
    Expire(Millis),
}

/// A store just opened: the handle, what it kept, and a signal for when its file is closed.
#[derive(Debug)]
pub struct Opened {
    pub store: DailyStore,
    pub restored: Vec<Restored>,
    /// Completes once the last handle is gone and the file is closed, so that the same data directory
    /// can be opened again (the file is locked while open).
    pub closed: oneshot::Receiver<()>,
}

/// One stored entry found when the store was opened.
#[derive(Debug, PartialEq)]
pub struct Restored {
    pub point: Name,
    pub peer_id: Name,
    pub entry: DailyEntry,
}

impl DailyStore {
    /// Opens (or creates) the store in `data_dir`, returns the entries still live at `now` and deletes
    /// the rest.
    pub fn open(data_dir: &DataDir, now: Millis) -> Result<Opened, StoreError> {
        let path = data_dir.path().join(FILE_NAME);
        let failed = |source: redb::Error| StoreError {
            path: path.clone(),
            source,
        };
        let database = Database::create(&path).map_err(|err| failed(err.into()))?;
        let restored = restore(&database, now).map_err(failed)?;
        info!(path = %path.display(), entries = restored.len(), "daily store opened");
        let (jobs, queue) = mpsc::channel();
        let (close, closed) = oneshot::channel();
        std::thread::Builder::new()
            .name("zajel-daily-store".into())
            .spawn(move || {
                write_jobs(&database, &queue, &path);
                drop(database);
                let _ = close.send(());
            })
            .expect("the store's thread starts");
        Ok(Opened {
            store: Self { jobs },
            restored,
            closed,
        })
    }

    /// Queues `changes` for the next commit; the answer says when they are on disk.
    pub fn write(&self, changes: Vec<DailyChange>) -> Written {
        if changes.is_empty() {
            return Written(None);
        }
        let (written, answer) = oneshot::channel();
        // A closed queue drops the job and its sender, which the answer reports as not written.
        let _ = self.jobs.send(Job::Write { changes, written });
        Written(Some(answer))
    }

    /// Deletes, with the next commit, the entries that expired by `now` (the store skips expired
    /// entries when it opens, so this only reclaims space).
    pub fn expire(&self, now: Millis) {
        let _ = self.jobs.send(Job::Expire(now));
    }
}

/// The answer to a [`DailyStore::write`].
#[derive(Debug)]
pub struct Written(Option<oneshot::Receiver<Result<(), NotWritten>>>);

impl Written {
    /// Completes when the changes are on disk, or could not be written.
    pub async fn wait(self) -> Result<(), NotWritten> {
        match self.0 {
            None => Ok(()),
            Some(answer) => answer.await.unwrap_or(Err(NotWritten)),
        }
    }
}

/// Deletes what expired by `now`, then reads the newest entry of each point and peer.
fn restore(database: &Database, now: Millis) -> Result<Vec<Restored>, redb::Error> {
    let transaction = database.begin_write()?;
    let mut newest = HashMap::new();
    {
        let mut table = transaction.open_table(DAILY)?;
        while delete_expired(&mut table, now, MAX_EXPIRED_PER_COMMIT)? == MAX_EXPIRED_PER_COMMIT {}
        let mut unreadable = 0usize;
        for item in table.iter()? {
            let (key, bytes) = item?;
            let (expires, point, peer_id) = key.value();
            match decode(expires, point, peer_id, bytes.value()) {
                // Keys run by expiry: a later version of the same entry comes later.
                Some(restored) => {
                    newest.insert((point.to_owned(), peer_id.to_owned()), restored);
                }
                None => unreadable += 1,
            }
        }
        if unreadable > 0 {
            warn!(unreadable, "daily store: unreadable entries skipped");
        }
    }
    transaction.commit()?;
    Ok(newest.into_values().collect())
}

/// The writer thread: commits every job waiting, in order, then answers them.
fn write_jobs(database: &Database, queue: &mpsc::Receiver<Job>, path: &Path) {
    let mut failing = false;
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_COMMIT
            && let Ok(next) = queue.try_recv()
        {
            jobs.push(next);
        }
        let result = commit(database, &jobs);
        match (&result, failing) {
            (Err(err), false) => {
                error!(path = %path.display(), error = %err, "daily store: cannot write; dead drops are kept in memory only")
            }
            (Ok(()), true) => info!(path = %path.display(), "daily store: writing again"),
            _ => {}
        }
        failing = result.is_err();
        for job in jobs {
            if let Job::Write { written, .. } = job {
                let _ = written.send(result.as_ref().map_err(|_| NotWritten).copied());
            }
        }
    }
}

fn commit(database: &Database, jobs: &[Job]) -> Result<(), redb::Error> {
    let transaction = database.begin_write()?;
    {
        let mut table = transaction.open_table(DAILY)?;
        for job in jobs {
            match job {
                Job::Write { changes, .. } => {
                    for change in changes {
                        let (point, peer_id) = (change.point.as_str(), change.peer_id.as_str());
                        // First, since the two may have the same key (a renewal in the same ms).
                        if let Some(replaced) = change.replaces {
                            table.remove((replaced, point, peer_id))?;
                        }
                        let key = (change.entry.expires, point, peer_id);
                        table.insert(key, encode(&change.entry).as_slice())?;
                    }
                }
                Job::Expire(now) => {
                    delete_expired(&mut table, *now, MAX_EXPIRED_PER_COMMIT)?;
                }
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

/// Deletes up to `most` entries that expired by `now`, from the front; returns how many.
fn delete_expired(
    table: &mut Table<(Millis, &str, &str), &[u8]>,
    now: Millis,
    most: usize,
) -> Result<usize, redb::Error> {
    let mut deleted = 0;
    while deleted < most {
        let expired = table.first()?.is_some_and(|(key, _)| key.value().0 <= now);
        if !expired {
            break;
        }
        table.pop_first()?;
        deleted += 1;
    }
    Ok(deleted)
}

/// An entry as the file holds it (its expiry is in its key): written from borrowed text, read into
/// owned.
#[derive(Serialize, Deserialize)]
struct Record<Text> {
    relay_id: Text,
    dead_drop: Option<Text>,
    key: Option<Text>,
    address: RecordAddress,
}

#[derive(Serialize, Deserialize)]
enum RecordAddress {
    V4(u32),
    V6(u64),
}

fn encode(entry: &DailyEntry) -> Vec<u8> {
    let record = Record {
        relay_id: &*entry.relay_id,
        dead_drop: entry.dead_drop.as_deref(),
        key: entry.key.as_deref(),
        address: match entry.address {
            AddressGroup::V4(v4) => RecordAddress::V4(v4.to_bits()),
            AddressGroup::V6(prefix) => RecordAddress::V6(prefix),
        },
    };
    let mut bytes = Vec::with_capacity(64);
    ciborium::into_writer(&record, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

fn decode(expires: Millis, point: &str, peer_id: &str, bytes: &[u8]) -> Option<Restored> {
    let record: Record<String> = ciborium::from_reader(bytes).ok()?;
    Some(Restored {
        point: Name::try_from(point).ok()?,
        peer_id: Name::try_from(peer_id).ok()?,
        entry: DailyEntry {
            relay_id: Arc::from(record.relay_id),
            dead_drop: record.dead_drop.map(Arc::from),
            expires,
            key: record.key.map(Arc::from),
            address: match record.address {
                RecordAddress::V4(bits) => AddressGroup::V4(Ipv4Addr::from_bits(bits)),
                RecordAddress::V6(prefix) => AddressGroup::V6(prefix),
            },
        },
    })
}
