//! Helpers shared by the integration tests that need them (`mod support;`).

// Each test target includes the whole module and uses some of it.
#![allow(dead_code)]

/// A tmpfs of limited size mounted on a temporary directory, unmounted
/// when dropped: a real full disk for the tests that fill one.
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts one of `size` (as `mount -o size=` takes it), or says why
    /// not: it needs root and a working `mount`.
    pub fn mount(size: &str) -> Result<SmallFs, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .ok_or("no effective uid in /proc/self/status")?;
        if uid != "0" {
            return Err(format!("not root (euid {uid})"));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(SmallFs { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// What a reader sees of each of `keys`: its type, its value or sorted
/// fields, its expiry (model tests compare engines through this).
pub fn reader_view(e: &ringkv::Engine, keys: impl IntoIterator<Item = String>) -> Vec<String> {
    keys.into_iter()
        .map(|k| {
            let value = match e.get(&k) {
                Ok(v) => format!("{v:?}"),
                Err(_) => {
                    let mut fields = e.hgetall(&k).expect("hgetall");
                    fields.sort();
                    format!("{fields:?}")
                }
            };
            format!("{k} {:?} {value} {:?}", e.key_type(&k), e.expire_time(&k))
        })
        .collect()
}
