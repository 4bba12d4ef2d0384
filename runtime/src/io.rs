//! File writing that survives a crash.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` so that, whenever the process dies, `path` holds either its old
/// contents or the new ones: write a temporary file in the same directory, flush it to disk,
/// rename it over `path` (atomic on POSIX), then flush the directory entry.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = folder(path);
    let tmp = temp_path(path, std::process::id())?;
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The folder `path` is in (`.` for a bare file name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The temporary file through which process `pid` writes `path`: `.<name>.tmp<pid>` beside it.
fn temp_path(path: &Path, pid: u32) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| Error::file(path, "not a file path"))?;
    Ok(folder(path).join(format!(".{}.tmp{pid}", name.to_string_lossy())))
}

/// Checks, before a long run, that [`write_atomic`] will be able to write `path`: its folder
/// exists and takes a new file, and `path` itself is not a folder. It probes by writing and
/// removing a temporary file of the writer's own name, so whatever would stop the real write
/// (a read-only file system, permissions, a missing folder) stops this one.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = folder(path);
    if !dir.is_dir() {
        return Err(Error::file(path, format!("cannot be written: its folder {} does not exist", dir.display())));
    }
    if path.is_dir() {
        return Err(Error::file(path, "cannot be written: it is a folder"));
    }
    let tmp = temp_path(path, std::process::id())?;
    File::create(&tmp).and_then(|_| fs::remove_file(&tmp)).map_err(|e| Error::file(path, format!("cannot be written: creating a file in {} fails ({e})", dir.display())))
}

/// Removes the temporary files that [`write_atomic`] left beside `path` when its process was
/// killed mid-write: only names of the writer's own pattern (`.<name>.tmp<pid>`) whose process
/// is gone, never a file of another name. Returns how many it removed.
pub fn remove_stale_temps(path: &Path) -> Result<usize> {
    let Some(name) = path.file_name() else { return Ok(0) };
    let prefix = format!(".{}.tmp", name.to_string_lossy());
    let dir = folder(path);
    let Ok(entries) = fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || process_is_running(pid) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Whether a process `pid` exists (where the system tells; elsewhere none is assumed, as a
/// temporary file of a running writer is renamed away within its write).
fn process_is_running(pid: u32) -> bool {
    cfg!(target_os = "linux") && Path::new(&format!("/proc/{pid}")).exists()
}
