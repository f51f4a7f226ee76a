//! `GET /browse`: the file picker's view of the share roots
//! (docs/client-api.md). Reading a folder may block, so it runs on the
//! store thread and the request waits on its op.

use reactor::http::Request;

use super::*;
use crate::node::catalog::persist::Stored;

impl Node {
    pub(crate) fn api_browse(&mut self, op: OpId, user: &str, req: &Request) -> Outcome {
        let path = req.query_param("path");
        let sandbox = self.settings.sandbox.clone();
        let job = move || Stored::Listed {
            op,
            result: sandbox.browse(path.as_deref()),
        };
        if self.store.submit(job).is_err() {
            return Reply::error(503, "The node is busy; try again in a moment").into();
        }
        crate::log_debug!("{user}: browsing folders");
        Outcome::Later(OpKind::Browse)
    }
}
