//! One module per subcommand, each with an `Args` struct and an `execute`.

pub mod alias;
pub mod audit;
pub mod bench;
pub mod bench_instances;
pub mod demo;
pub mod demo_serve;
pub mod devices;
pub mod drift;
pub mod key;
pub mod keygen;
pub mod list;
pub mod predict;
pub mod publish;
pub mod registry;
pub mod serve;
pub mod show;
pub mod train;
pub mod trust;
pub mod verify;
pub mod yank;
