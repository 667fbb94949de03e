//! Paths an agent names, confined to its workspace.
//!
//! A path is relative to the workspace; absolute paths are refused. It is normalised
//! lexically (`..` may not climb above the root), then the deepest part that exists is
//! resolved with symlinks followed and must still lie inside the workspace. Files are then
//! opened without following a final symlink, and a file with other hard links is not
//! written (it could be the same file as one outside).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn new(root: &Path) -> std::io::Result<Workspace> {
        Ok(Workspace { root: root.canonicalize()? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` to a path inside the workspace, or says why it cannot be.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, String> {
        if rel.contains('\0') {
            return Err("the path contains a NUL byte".into());
        }
        let p = Path::new(rel);
        if p.is_absolute() {
            return Err(format!("`{rel}` is absolute; give a path relative to the workspace"));
        }
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => parts.push(s),
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(format!("`{rel}` leaves the workspace"));
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(format!("`{rel}` is absolute")),
            }
        }
        let mut full = self.root.clone();
        for s in &parts {
            full.push(s);
        }
        // Resolve the longest existing prefix with symlinks followed.
        let mut existing = full.clone();
        let mut tail = Vec::new();
        loop {
            match existing.canonicalize() {
                Ok(c) => {
                    if !c.starts_with(&self.root) {
                        return Err(format!("`{rel}` leads outside the workspace through a symlink"));
                    }
                    let mut out = c;
                    for t in tail.iter().rev() {
                        out.push(t);
                    }
                    return Ok(out);
                }
                Err(_) => {
                    // A dangling symlink must not be written through either.
                    if existing.symlink_metadata().is_ok() {
                        return Err(format!("`{rel}` is a symlink that points nowhere inside the workspace"));
                    }
                    match (existing.file_name().map(|f| f.to_os_string()), existing.parent()) {
                        (Some(name), Some(parent)) => {
                            tail.push(name);
                            existing = parent.to_path_buf();
                        }
                        _ => return Err(format!("`{rel}` cannot be resolved")),
                    }
                }
            }
        }
    }

    /// Relative display form of an absolute path inside the workspace.
    pub fn show(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .map(|r| if r.as_os_str().is_empty() { ".".into() } else { r.display().to_string() })
            .unwrap_or_else(|_| p.display().to_string())
    }

    pub fn open_read(&self, rel: &str) -> Result<(PathBuf, File), String> {
        let path = self.resolve(rel)?;
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(|e| format!("cannot open `{rel}`: {e}"))?;
        Ok((path, f))
    }

    /// Writes a whole file, creating parent directories inside the workspace.
    pub fn write(&self, rel: &str, content: &[u8]) -> Result<PathBuf, String> {
        let path = self.resolve(rel)?;
        if let Ok(m) = path.symlink_metadata() {
            if m.is_dir() {
                return Err(format!("`{rel}` is a directory"));
            }
            if m.is_file() && m.nlink() > 1 {
                return Err(format!("`{rel}` has other hard links, which may lie outside the workspace; it is not written"));
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create the directory for `{rel}`: {e}"))?;
            // The directories just made must not have been swapped for a symlink meanwhile.
            let canon = parent.canonicalize().map_err(|e| format!("cannot resolve the directory of `{rel}`: {e}"))?;
            if !canon.starts_with(&self.root) {
                return Err(format!("`{rel}` leads outside the workspace"));
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(|e| format!("cannot write `{rel}`: {e}"))?;
        f.write_all(content).map_err(|e| format!("cannot write `{rel}`: {e}"))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_paths_resolve_and_escapes_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let ws_dir = outer.path().join("ws");
        std::fs::create_dir(&ws_dir).unwrap();
        std::fs::write(outer.path().join("secret.txt"), "outside").unwrap();
        std::os::unix::fs::symlink(outer.path(), ws_dir.join("up")).unwrap();
        std::os::unix::fs::symlink(outer.path().join("secret.txt"), ws_dir.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", ws_dir.join("dangling")).unwrap();
        std::fs::hard_link(outer.path().join("secret.txt"), ws_dir.join("hard.txt")).unwrap();
        let ws = Workspace::new(&ws_dir).unwrap();
        assert!(ws.resolve("a/b/../c.txt").unwrap().ends_with("ws/a/c.txt"));
        for bad in ["../secret.txt", "a/../../secret.txt", "/etc/passwd", "up/secret.txt", "link.txt", "dangling", "up"] {
            assert!(ws.resolve(bad).is_err(), "{bad} resolved");
            assert!(ws.write(bad, b"x").is_err(), "{bad} written");
        }
        assert!(ws.write("hard.txt", b"x").unwrap_err().contains("hard links"));
        assert_eq!(std::fs::read_to_string(outer.path().join("secret.txt")).unwrap(), "outside");
        ws.write("new/dir/f.txt", b"ok").unwrap();
        assert_eq!(std::fs::read_to_string(ws_dir.join("new/dir/f.txt")).unwrap(), "ok");
    }
}
