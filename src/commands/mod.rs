//! One module per subcommand, each with an `Args` struct and an `execute`.

pub mod demo;
pub mod predict;
pub mod train;
