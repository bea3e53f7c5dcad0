//! One module per command family: each holds its clap arguments and the `run` that carries
//! them out. Admin commands talk to the server through `flotilla_client`'s typed API.

pub mod agent;
pub mod apply;
pub mod bench;
pub mod completion;
pub mod delete;
pub mod demo;
pub mod describe;
pub mod diff;
pub mod edit;
pub mod explain;
pub mod get;
pub mod history;
pub mod label;
pub mod render;
pub mod rollout;
pub mod server;
pub mod sim;
pub mod token;
pub mod version;
pub mod watch;
