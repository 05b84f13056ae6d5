//! The cluster id and this member's name: stable across restarts.

use std::path::Path;

use anyhow::Context as _;

const CLUSTER_ID_FILE: &str = "cluster-id";

/// The cluster id stored in `data_dir`, created (random, non-zero) on first start.
pub fn cluster_id(data_dir: &Path) -> anyhow::Result<u64> {
    let file = data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => u64::from_str_radix(text.trim(), 16)
            .ok()
            .filter(|id| *id != 0)
            .with_context(|| {
                format!(
                    "{} holds {text:?}, not a cluster id (16 hex digits)",
                    file.display()
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = rand::random::<u64>().max(1);
            let tmp = data_dir.join(format!("{CLUSTER_ID_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                std::fs::write(&tmp, format!("{id:016x}\n"))?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &file)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().with_context(|| format!("writing {}", file.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// This machine's hostname, for the default member name and advertised URLs.
pub fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = cluster_id(dir.path()).expect("created");
        assert_ne!(id, 0);
        assert_eq!(cluster_id(dir.path()).expect("read"), id);
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "zz").expect("write");
        assert!(cluster_id(dir.path()).is_err());
    }
}
