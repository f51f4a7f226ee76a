//! Followed folders (docs/client-api.md, "Followed folders"):
//! `/add-folder`, `/folders`, `/remove-folder` and `/rescan`. A folder is
//! checked on the store thread (a realpath and an open beneath its share
//! root may block), followed once that change is on disk, and listed on
//! a worker (`catalog::rescan`).

use super::*;
use crate::node::catalog::folders::trim_path;
use crate::node::catalog::persist::Stored;
use crate::node::catalog::{Folder, Unfollowed};
use crate::node::ops::FolderAsk;

/// `true`/`false`, or `default` when absent; `what` says what the choice
/// is in words (people read these answers, not field names).
fn flag(b: &Fields, key: &str, default: bool, what: &str) -> Result<bool, Reply> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(v)) => Ok(*v),
        Some(_) => Err(Reply::error(
            400,
            &format!("Say with true or false whether {what}"),
        )),
    }
}

/// The folder's path, or `missing` as the answer.
fn folder_path<'a>(b: &'a Fields, missing: &str) -> Result<&'a str, Reply> {
    match b.get("path") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(Reply::error(400, missing)),
        Some(_) => Err(Reply::error(
            400,
            "Give the folder as its full path, for example /home/me/Photos",
        )),
    }
}

impl Node {
    pub(crate) fn api_add_folder(&mut self, op: OpId, user: &str, b: &Fields) -> Outcome {
        let path = try_reply!(folder_path(b, "Choose a folder to share"));
        if !Path::new(path).is_absolute() {
            return Reply::error(
                400,
                &format!("Give the folder's full path (starting with /), not '{path}'"),
            )
            .into();
        }
        let ask = FolderAsk {
            user: user.to_owned(),
            path: trim_path(path).to_owned(),
            recursive: try_reply!(flag(b, "recursive", false, "to include sub-folders")),
            publish: try_reply!(flag(b, "publish", true, "to publish new files once hashed")),
        };
        let sandbox = self.settings.sandbox.clone();
        let job = move || Stored::FolderChecked {
            op,
            result: sandbox.check_folder(&ask.path),
            ask,
        };
        if self.store.submit(job).is_err() {
            return Reply::error(503, "The node is busy; try again in a moment").into();
        }
        Outcome::Later(OpKind::AddFolder)
    }

    /// The store thread checked a folder to follow (from `store_done`).
    pub(crate) fn folder_checked(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        ask: FolderAsk,
        result: Result<PathBuf, (u16, String)>,
    ) {
        if self.take_op(op).is_none() {
            return;
        }
        let real = match result {
            Ok(r) => r,
            Err((status, msg)) => return self.finish(cx, op, Reply::error(status, &msg)),
        };
        let Some(u) = self.users.get_mut(&ask.user) else {
            return self.finish(cx, op, Reply::error(409, "You logged out meanwhile"));
        };
        let now = unix_now();
        let before =
            match u
                .catalog
                .follow(&ask.path, real.clone(), ask.recursive, ask.publish, now)
            {
                Ok(b) => b,
                Err((status, msg)) => return self.finish(cx, op, Reply::error(status, &msg)),
            };
        let then = AfterSave::Followed {
            real,
            before: before.map(Box::new),
        };
        let out = self.commit(cx, op, &ask.user, then);
        self.settle(cx, op, out);
        // Its files now, not at the next tick.
        self.scan_folders(cx, &ask.user, None);
    }

    pub(crate) fn api_folders(&self, user: &str) -> Reply {
        self.folders_reply(user)
    }

    /// `{success, folders}` as `/folders` and `/rescan` answer.
    pub(crate) fn folders_reply(&self, user: &str) -> Reply {
        let Some(u) = self.users.get(user) else {
            return Reply::error(404, "Unknown user");
        };
        let folders: Vec<Value> = u
            .catalog
            .folders()
            .iter()
            .map(|d| u.catalog.folder_json(d))
            .collect();
        Reply::ok(json!({"success": true, "folders": folders}))
    }

    pub(crate) fn api_remove_folder(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        b: &Fields,
    ) -> Outcome {
        let path = try_reply!(folder_path(b, "Choose the folder to stop following"));
        let remove_files = try_reply!(flag(
            b,
            "remove_files",
            false,
            "to stop tracking the folder's files too"
        ));
        let Some(u) = self.users.get_mut(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        let Some(gone) = u.catalog.unfollow(path, remove_files) else {
            return Reply::error(
                404,
                &format!("You do not follow the folder {path}; nothing to stop"),
            )
            .into();
        };
        // Peers stop getting removed files at once; the registry hears once
        // the change is on disk.
        let published: Vec<String> = gone
            .removed
            .iter()
            .filter(|f| f.is_published)
            .map(|f| f.name.clone())
            .collect();
        for name in published {
            self.net_sync_file(user, &name);
        }
        self.commit(cx, op, user, AfterSave::Unfollowed(Box::new(gone)))
    }

    pub(crate) fn api_rescan(&mut self, cx: &mut Ctx, op: OpId, user: &str) -> Outcome {
        let Some(u) = self.users.get(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        let none = u.catalog.folders().is_empty();
        self.scan_user(user);
        if none {
            return self.folders_reply(user).into();
        }
        self.scan_folders(cx, user, Some(op));
        Outcome::Later(OpKind::Rescan)
    }

    /// `after_save` for a folder change.
    pub(crate) fn folder_saved(&mut self, cx: &mut Ctx, user: &str, then: AfterSave) -> Outcome {
        match then {
            AfterSave::Followed { real, before } => {
                let Some(u) = self.users.get(user) else {
                    return Reply::error(404, "Unknown user").into();
                };
                let Some(d) = u.catalog.folders().iter().find(|d| d.real == real) else {
                    return Reply::error(409, "The folder stopped being followed meanwhile").into();
                };
                let what = if before.is_some() {
                    "updated"
                } else {
                    "following"
                };
                crate::log_info!("{user}: {what} folder {}", d.path);
                let folder = u.catalog.folder_json(d);
                Reply::ok(json!({"success": true, "folder": folder})).into()
            }
            AfterSave::Unfollowed(gone) => {
                for f in gone.removed.iter().filter(|f| f.is_published) {
                    self.quiet_unpublish(cx, user, &f.name);
                }
                crate::log_info!(
                    "{user}: no longer following folder {} ({} files kept, {} removed)",
                    gone.folder.path,
                    gone.kept.len(),
                    gone.removed.len()
                );
                Reply::ok(json!({
                    "success": true,
                    "kept": gone.kept.len(),
                    "removed": gone.removed.len(),
                }))
                .into()
            }
            // Only folder changes come here (`after_save`).
            _ => Reply::ok(json!({"success": true})).into(),
        }
    }

    /// Undoes a folder change that could not be saved.
    pub(crate) fn folder_undo(&mut self, user: &str, then: AfterSave) {
        // The catalog may be parked (the user logged out meanwhile).
        let Some(c) = self.catalog_mut(user) else {
            return;
        };
        match then {
            AfterSave::Followed { real, before } => {
                c.restore_folder(&real, before.map(|b: Box<Folder>| *b))
            }
            AfterSave::Unfollowed(gone) => {
                let gone: Unfollowed = *gone;
                let back = c.refollow(gone);
                for name in back {
                    let (published, hashed) = self
                        .users
                        .get(user)
                        .and_then(|u| u.catalog.get(&name))
                        .map(|f| (f.is_published, f.sha256.is_some() && f.root.is_some()))
                        .unwrap_or((false, true));
                    if published {
                        self.net_sync_file(user, &name);
                    }
                    if !hashed {
                        self.queue_hash(user, &name);
                    }
                }
            }
            _ => {}
        }
    }
}
