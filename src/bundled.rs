//! What ships inside the binary: the example plugins (built from `plugins/` by
//! `build.rs`), the bundled pipelines and their data sets.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
include!(concat!(env!("OUT_DIR"), "/export_parts.rs"));

pub use tensorlet_runtime::demo::Example;

/// The bundled pipelines.
pub static EXAMPLES: &[Example] = &[
    Example {
        name: "iris",
        pipeline: include_str!("../plugins/pipelines/iris.toml"),
        data_file: "iris.csv",
        data: include_str!("../data/iris.csv"),
    },
    Example {
        name: "digits",
        pipeline: include_str!("../plugins/pipelines/digits.toml"),
        data_file: "digits.csv",
        data: include_str!("../data/digits.csv"),
    },
    Example {
        name: "digits-cnn",
        pipeline: include_str!("../plugins/pipelines/digits-cnn.toml"),
        data_file: "digits.csv",
        data: include_str!("../data/digits.csv"),
    },
    Example {
        name: "sequences-transformer",
        pipeline: include_str!("../plugins/pipelines/sequences-transformer.toml"),
        data_file: "sequences.csv",
        data: include_str!("../data/sequences.csv"),
    },
];

/// The bytes of a bundled plugin.
pub fn plugin(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The bytes of a component that `tensorlet export` composes with a model
/// (`http-front`, `tensor-cpu`).
pub fn export_part(name: &str) -> Option<&'static [u8]> {
    EXPORT_PARTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}
