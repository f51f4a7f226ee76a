//! `p2pshare node` and `p2pshare up`: the node alone, or the coordinator and
//! a node sharing one reactor (the embedded default for one machine).

use crate::config::Config;

pub fn run_node(cfg: Config) -> Result<(), String> {
    crate::node::run(cfg)
}

pub fn run_up(cfg: Config) -> Result<(), String> {
    crate::coordinator::Coordinator::run(cfg)
}
