//! `componentize-c`: the two steps around `clang` that turn a C plugin into a
//! tensorlet component, as library calls instead of the `wit-bindgen` and
//! `wasm-tools` CLIs (which take minutes to `cargo install`).
//!
//! ```text
//! componentize-c bindings <wit-dir> <world> <out-dir>
//!     C bindings for a world of tensorlet:ml (wit-bindgen-c): plugin.h, plugin.c and
//!     plugin_component_type.o, which carries the component type into the link. They
//!     are named `plugin` whatever the world, so tensorlet.h works with all of them.
//! componentize-c new <core.wasm> <out.wasm>
//!     Wraps a core module built for wasm32-wasi (preview 1, -mexec-model=reactor)
//!     into a component, adapting its WASI imports with the preview-1 reactor
//!     adapter from the crate wasi-preview1-component-adapter-provider.
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;
use wit_parser::Resolve;

/// The generated files are `plugin.h`, `plugin.c` and `plugin_component_type.o`.
const BINDINGS_NAME: &str = "plugin";

const USAGE: &str = "usage:
  componentize-c bindings <wit-dir> <world> <out-dir>
  componentize-c new <core.wasm> <out.wasm>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["bindings", wit, world, out] => bindings(Path::new(wit), world, Path::new(out)),
        ["new", core, out] => new(Path::new(core), Path::new(out)),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("componentize-c: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the C bindings of `world` (a world of the package in `wit`) into `out`.
fn bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot read the WIT package in {}", wit.display()))?;
    let world_id = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("no world `{world}` in {}", wit.display()))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts {
        // One name for every world, so `tensorlet.h` can use the generated types
        // (`plugin_string_t`, `plugin_list_f32_t`, …) whichever world is built.
        rename_world: Some(BINDINGS_NAME.to_string()),
        ..wit_bindgen_c::Opts::default()
    }
    .build()
    .generate(&mut resolve, world_id, &mut files)
    .context("generating the C bindings")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        write_if_changed(&path, contents)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes a file unless it already holds `contents`, so that `make`-style
/// timestamps stay put when nothing changed.
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Turns the core module `core` into the component `out`.
fn new(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("cannot read {}", core.display()))?;
    if !module.starts_with(b"\0asm\x01\0\0\0") {
        bail!(
            "{} is not a core wasm module (was it built with --target=wasm32-wasi?)",
            core.display()
        );
    }
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .with_context(|| {
            format!(
                "{} has no component type; link the plugin_component_type.o that \
                 `componentize-c bindings` wrote, and do not strip custom sections",
                core.display()
            )
        })?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("loading the WASI preview-1 reactor adapter")?
        .encode()
        .with_context(|| format!("componentizing {}", core.display()))?;
    let out: PathBuf = out.to_path_buf();
    std::fs::write(&out, &component).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{} ({} bytes)", out.display(), component.len());
    Ok(())
}
