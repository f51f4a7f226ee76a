//! The client requests that wait — on the registry, the coordinator, a
//! worker or a durable write — and what each waits for. Every owner that
//! carries a request across a wait (`client`, `network`, `catalog`) names
//! these types here, so none of them imports another's internals.

pub use crate::http_server::Reply;
use crate::node::catalog::{Folder, Publication, TrackedFile, Unfollowed};
use crate::node::network::index::NetHost;
use crate::node::OpId;
use reactor::http::Request;

/// The answer to a request that needs the user's network session first.
pub const NOT_INITIALISED: &str = "Not connected to the network yet: POST /api/client/init first";

/// A request that is not answered yet: what it waits for.
pub enum OpKind {
    /// /register or /login forwarded to the server API.
    Forward {
        login: bool,
    },
    /// An unknown token being checked with the coordinator; the request follows.
    Verify {
        req: Box<Request>,
        token: String,
    },
    /// /init: the first REGISTER.
    Init,
    /// /logout, done here; the coordinator revokes the token next.
    Logout {
        user: String,
    },
    Publish(PublishOp),
    Unpublish {
        name: String,
    },
    Fetch(FetchOp),
    /// A fetch started; answered once its record is on disk.
    FetchRecorded {
        user: String,
        fetch_id: String,
    },
    /// A fetch cancelled; answered once its `.part` is removed and the
    /// record saved.
    FetchCancelled,
    /// Finished fetch records forgotten; answered once the records are saved.
    FetchesCleared {
        cleared: usize,
    },
    /// Waiting for the network index (a walk of LIST pages).
    Network(NetworkOp),
    /// Waiting for the user's catalog to be on disk with this request's change.
    Saving(SaveOp),
    /// A node credential asked of the coordinator (no client waits).
    Standing {
        user: String,
        registry: std::net::SocketAddr,
    },
    /// A folder being read for the file picker (store thread).
    Browse,
    /// A folder to follow being checked (store thread).
    AddFolder,
    /// `/rescan`: answered once the followed folders were listed again.
    Rescan,
    /// A call to the server API nobody waits for; its answer is logged.
    Background(&'static str),
    /// The user's catalog is being loaded; the request is routed after.
    Load {
        req: Box<Request>,
        rest: String,
        user: String,
    },
}

pub struct PublishOp {
    pub user: String,
    pub name: String,
    pub force: bool,
    pub stage: PublishStage,
    /// Hosts the REQUEST by name found.
    pub found: Vec<NetHost>,
    pub published_at: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PublishStage {
    /// Waiting for the file's hash (a publish right after `/add-file`);
    /// the publish starts over once it ends (`routes`, `resume_hash_waits`).
    Hashing,
    /// REQUEST by name answered next.
    Request,
    /// The network index (all LIST pages), for duplicates under other names.
    List,
    /// PUBLISH sent.
    Ack,
}

pub struct FetchOp {
    pub user: String,
    pub fname: String,
    /// The content asked for (lowercase hex); None: the name's only content.
    pub sha256: Option<String>,
    pub target: std::path::PathBuf,
    pub overwrite: bool,
    pub prefer: Option<String>,
    /// Add the finished file to the user's files and publish it.
    pub share: bool,
}

pub struct NetworkOp {
    pub user: String,
    pub q: String,
    pub offset: usize,
    pub limit: usize,
}

/// What a handler decided: answer now, or wait for `OpKind`.
pub enum Outcome {
    Now(Reply),
    Later(OpKind),
}

impl From<Reply> for Outcome {
    fn from(r: Reply) -> Outcome {
        Outcome::Now(r)
    }
}

/// What the next registry answer is for (answers come in request order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Register,
    Ping,
    /// Nobody waits; an ERROR is logged with this context.
    Quiet(&'static str),
    /// A client request waits for it.
    Op(OpId),
    /// A LIST page of the network walk this connection carries.
    Walk,
    /// Hosts for a running fetch (its lookup number in `transfers::fetch`).
    FetchHosts(u64),
}

/// How a request goes on once its change is on disk, and how the change
/// is undone if the write fails.
pub enum AfterSave {
    /// Nothing of its own to undo: answer this (it waited for earlier changes).
    Reply(Reply),
    Added {
        name: String,
        path: String,
        added_at: f64,
    },
    Removed(Box<TrackedFile>),
    Published {
        name: String,
        before: Publication,
        after: Publication,
        /// The registry already has it (its PUBLISH was acknowledged).
        announced: bool,
        note: Option<&'static str>,
    },
    Unpublished {
        name: String,
        before: Publication,
        after: Publication,
    },
    /// A folder followed (resolved as `real`); `before`: its flags before,
    /// if it was followed already.
    Followed {
        real: std::path::PathBuf,
        before: Option<Box<Folder>>,
    },
    Unfollowed(Box<Unfollowed>),
}

/// A folder to follow (`/add-folder`), checked on the store thread.
pub struct FolderAsk {
    pub user: String,
    /// As given, without trailing slashes.
    pub path: String,
    pub recursive: bool,
    pub publish: bool,
}

pub struct SaveOp {
    pub user: String,
    /// The catalog version that holds the change.
    pub need: u64,
    pub then: AfterSave,
}
