//! The data directory: what the server keeps across restarts (its identity key, its development
//! certificate). Files are replaced atomically, so a crash mid-write leaves the old file or the new one,
//! never half of either.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the partial files of concurrent writers in one process.
static NEXT_PARTIAL: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
#[error("data directory {path}: {source}")]
pub struct DataDirError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Opens the directory, creating it (and its parents) if needed.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        std::fs::create_dir_all(path).map_err(|source| DataDirError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents of file `name`, or `None` if there is none.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, DataDirError> {
        let path = self.path.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DataDirError { path, source }),
        }
    }

    /// Replaces file `name` with `bytes`, readable by this user only (it may hold private keys).
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), DataDirError> {
        let path = self.path.join(name);
        let partial = self.write_partial(name, bytes)?;
        std::fs::rename(&partial, &path).map_err(|source| DataDirError { path, source })
    }

    /// Writes file `name` unless it exists. Returns whether this call wrote it: of several processes
    /// making the same file at once, exactly one does, and the others read what it wrote.
    pub fn create(&self, name: &str, bytes: &[u8]) -> Result<bool, DataDirError> {
        let path = self.path.join(name);
        let partial = self.write_partial(name, bytes)?;
        let linked = std::fs::hard_link(&partial, &path);
        let _ = std::fs::remove_file(&partial);
        match linked {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(DataDirError { path, source }),
        }
    }

    /// Writes `bytes` to a new file beside `name`, synced to disk, and returns its path.
    fn write_partial(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, DataDirError> {
        let partial = self.path.join(format!(
            ".{name}.{}.{}.partial",
            std::process::id(),
            NEXT_PARTIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let error = |source| DataDirError {
            path: partial.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial).map_err(error)?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(error)?;
        Ok(partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_whole_and_read_back() {
        let root = std::env::temp_dir().join(format!("zajel-data-dir-{}", std::process::id()));
        let dir = DataDir::open(&root.join("nested")).unwrap();
        assert_eq!(dir.read("key").unwrap(), None);
        dir.write("key", b"first").unwrap();
        dir.write("key", b"second").unwrap();
        assert_eq!(dir.read("key").unwrap().as_deref(), Some(&b"second"[..]));
        assert!(dir.create("once", b"first").unwrap());
        assert!(
            !dir.create("once", b"second").unwrap(),
            "an existing file is kept"
        );
        assert_eq!(dir.read("once").unwrap().as_deref(), Some(&b"first"[..]));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["key", "once"], "no partial file is left behind");
        std::fs::remove_dir_all(root).unwrap();
    }
}
