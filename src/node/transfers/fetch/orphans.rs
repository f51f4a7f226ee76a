//! At start-up, before anything is served: `.part` files no fetch record
//! claims are removed (a crash between creating a `.part` and recording
//! its fetch, or a record lost, would otherwise leave them forever). It
//! looks only where this node writes downloads by itself: the `.part`
//! files directly inside each user's downloads folder, and the `.part` of
//! every target a finished fetch recorded. It never walks other folders.

use std::fs;
use std::path::{Path, PathBuf};

/// Removes the orphans; `claimed` are the `.part` files of fetches that go
/// on, `recorded` those of finished fetches (anything there is left over).
pub fn remove(data_dir: &Path, claimed: &[PathBuf], recorded: &[PathBuf]) {
    let mut found: Vec<PathBuf> = recorded.to_vec();
    if let Ok(users) = fs::read_dir(data_dir.join("users")) {
        for user in users.flatten() {
            let downloads = user.path().join("downloads");
            let Ok(entries) = fs::read_dir(&downloads) else {
                continue;
            };
            found.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                    .map(|e| e.path()),
            );
        }
    }
    for part in found {
        if claimed.contains(&part) {
            continue;
        }
        // Only files (or links, which removing does not follow); a folder
        // of that name is someone's data.
        let is_file = fs::symlink_metadata(&part).is_ok_and(|m| !m.is_dir());
        if is_file && fs::remove_file(&part).is_ok() {
            crate::log_info!(
                "removed {}: no download claims it (left by a crash)",
                part.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unclaimed_parts_in_downloads_and_recorded_targets_go() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let down = data.join("users/alice/downloads");
        fs::create_dir_all(&down).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let orphan = down.join("a.bin.part");
        let mine = down.join("b.bin.part");
        let kept = down.join("c.bin");
        let stray = elsewhere.join("x.part");
        let old = elsewhere.join("done.bin.part");
        for p in [&orphan, &mine, &kept, &stray, &old] {
            fs::write(p, b"x").unwrap();
        }
        fs::create_dir(down.join("folder.part")).unwrap();
        remove(
            &data,
            std::slice::from_ref(&mine),
            std::slice::from_ref(&old),
        );
        assert!(!orphan.exists());
        assert!(!old.exists());
        assert!(mine.exists() && kept.exists() && stray.exists());
        assert!(down.join("folder.part").is_dir());
    }
}
