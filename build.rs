//! Builds the example plugins (the separate `plugins/` workspace) as
//! components, so that `cargo build` yields them with no manual step: the
//! bundled and test plugins for `wasm32-unknown-unknown` (no WASI), the export
//! parts for `wasm32-wasip2`. The bundled ones are embedded in the binary
//! (`src/bundled.rs`); all of them, test plugins included, are copied to
//! `$OUT_DIR`, whose path reaches the tests as `TENSORLET_PLUGIN_DIR`.
//!
//! It first makes sure the toolchain has the two wasm targets, adding them
//! with rustup where they are missing (see [`ensure_targets`]). It cannot
//! check them before the long part of a fresh build: cargo starts the ready
//! unit with the most units waiting on it, and only this package's binary
//! and tests wait on this script, so it comes near the end. On a fresh clone
//! (two cores shared with other builds, 628 units) it was compiled as unit
//! 618, 84 % into the build, 600 s after the one unit it waits for (the
//! build script of `libmimalloc-sys`, which has a `links` key) had run.
//! Cargo has no hook that runs before the dependencies, so where rustup is
//! there this script repairs the toolchain instead of failing, and only
//! without rustup does it stop, with the command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugins embedded in the binary: (name in pipelines, crate's wasm file stem).
const BUNDLED: &[(&str, &str)] = &[
    ("standardize", "standardize"),
    ("passthrough", "passthrough"),
    ("softmax-regression", "softmax_regression"),
    ("mlp", "mlp"),
    ("onnx-predict", "onnx_predict"),
    ("imputer", "imputer"),
    ("one-hot", "one_hot"),
    ("ordinal", "ordinal"),
    ("min-max", "min_max"),
    ("robust", "robust"),
    ("cnn", "cnn"),
    ("transformer", "transformer"),
];

/// The target of the bundled and test plugins: no WASI.
const BARE_TARGET: &str = "wasm32-unknown-unknown";
/// The target of the export parts.
const WASI_TARGET: &str = "wasm32-wasip2";

/// Every target the plugins are built for; `rust-toolchain.toml` lists them.
const TARGETS: [&str; 2] = [BARE_TARGET, WASI_TARGET];

/// Test-only plugins, built but not embedded.
const TEST_ONLY: &[&str] = &["misbehave", "misbehave_model"];

/// Plugins built for the previous plugin ABI (0.1) from today's sources, in
/// the separate workspace `plugins/legacy`: (name, crate's wasm file stem).
/// Embedded for `tensorlet bench train` (the hand-written MLP that autodiff
/// is compared with) and copied for the compatibility tests.
const LEGACY: &[(&str, &str)] = &[("mlp-v0.1", "mlp_v01")];

/// What `tensorlet export --wasi-http` composes with a model, embedded in the
/// binary: (name, crate's wasm file stem). `tensor-cpu` compiles the host's CPU
/// backend; the fronts (`http-front` on WASI 0.2, `spin-front` on spin-sdk and
/// WASI 0.3) share `oip-front`, which includes the serving code's OIP module.
const EXPORT_PARTS: &[(&str, &str)] = &[
    ("http-front", "http_front"),
    ("spin-front", "spin_front"),
    ("tensor-cpu", "tensor_cpu"),
    ("forward-predict", "forward_predict"),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let plugins = root.join("plugins");

    for p in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/.cargo/config.toml",
        "plugins/legacy/Cargo.toml",
        "plugins/legacy/Cargo.lock",
        // The tabular preprocessors' shared crate.
        "plugins/tabular/src",
        "plugins/tabular/Cargo.toml",
        // The fronts' shared crate.
        "plugins/oip-front/src",
        "plugins/oip-front/Cargo.toml",
        // http-front depends on the OIP crate, as the server does.
        "oip/src",
        "oip/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    for stem in BUNDLED
        .iter()
        .map(|(_, s)| *s)
        .chain(TEST_ONLY.iter().copied())
        .chain(EXPORT_PARTS.iter().map(|(_, s)| *s))
    {
        let dir = stem.replace('_', "-");
        println!("cargo:rerun-if-changed=plugins/{dir}/src");
        println!("cargo:rerun-if-changed=plugins/{dir}/Cargo.toml");
    }
    for (_, stem) in LEGACY {
        let dir = stem.replace('_', "-");
        println!("cargo:rerun-if-changed=plugins/legacy/{dir}/src");
        println!("cargo:rerun-if-changed=plugins/legacy/{dir}/Cargo.toml");
    }

    ensure_targets();

    // <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out -> <target>/wasm-plugins:
    // a cross build (`--target aarch64-…`) shares the native build's plugins.
    let triple = std::env::var("TARGET").unwrap_or_default();
    let target_dir = out
        .ancestors()
        .nth(4)
        .map(|t| match t.parent() {
            Some(up) if t.file_name().is_some_and(|n| n == triple.as_str()) => up,
            _ => t,
        })
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out.join("wasm-plugins"));
    // The bundled and test plugins are built without WASI (they import only
    // tensorlet:ml, and wasi:cli/stderr for panic messages), which makes their
    // per-call instances cheaper; the export parts run under other Wasm hosts,
    // as wasm32-wasip2 components.
    let bare: Vec<&str> = BUNDLED
        .iter()
        .map(|(_, s)| *s)
        .chain(TEST_ONLY.iter().copied())
        .collect();
    let wasi: Vec<&str> = EXPORT_PARTS.iter().map(|(_, s)| *s).collect();
    build_plugins(&plugins, &target_dir, BARE_TARGET, &bare);
    build_plugins(&plugins, &target_dir, WASI_TARGET, &wasi);
    let legacy: Vec<&str> = LEGACY.iter().map(|(_, s)| *s).collect();
    let legacy_dir = target_dir.join("legacy");
    build_plugins(&plugins.join("legacy"), &legacy_dir, BARE_TARGET, &legacy);

    let built_bare = target_dir.join(BARE_TARGET).join("release");
    let built_wasi = target_dir.join(WASI_TARGET).join("release");
    let mut table = String::from("pub static BUNDLED: &[(&str, &[u8])] = &[\n");
    for (name, stem) in BUNDLED {
        let dest = copy(&built_bare, &out, stem);
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            dest.display().to_string()
        ));
    }
    table.push_str("];\n");
    for stem in TEST_ONLY {
        copy(&built_bare, &out, stem);
    }
    table.push_str("pub static LEGACY: &[(&str, &[u8])] = &[\n");
    for (name, stem) in LEGACY {
        let dest = copy(&legacy_dir.join(BARE_TARGET).join("release"), &out, stem);
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            dest.display().to_string()
        ));
    }
    table.push_str("];\n");
    let mut parts = String::from("pub static EXPORT_PARTS: &[(&str, &[u8])] = &[\n");
    for (name, stem) in EXPORT_PARTS {
        let dest = copy(&built_wasi, &out, stem);
        parts.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            dest.display().to_string()
        ));
    }
    parts.push_str("];\n");
    std::fs::write(out.join("export_parts.rs"), parts).unwrap();
    for p in ["host-gpu/src", "host-gpu/Cargo.toml"] {
        println!("cargo:rerun-if-changed={p}");
    }
    std::fs::write(out.join("bundled.rs"), table).unwrap();
    println!("cargo:rustc-env=TENSORLET_PLUGIN_DIR={}", out.display());
}

/// Makes sure the compiler of this build has the standard library of every
/// target in [`TARGETS`] before the plugins are built with it.
///
/// rustup adds the targets `rust-toolchain.toml` lists only when it installs
/// the toolchain itself: with a toolchain that was installed already, or
/// with `RUSTUP_AUTO_INSTALL=0`, they are missing and the plugin build fails
/// with "can't find crate for `core`". Under rustup (its proxies set
/// `RUSTUP_TOOLCHAIN` to the active toolchain, the one `rust-toolchain.toml`
/// names) the missing targets are added to that toolchain; without rustup
/// the build stops here, before the plugins, with the command to run. When
/// the targets are there, this costs one `rustc --print sysroot`.
fn ensure_targets() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| stop(&format!("cannot run `{rustc} --print sysroot`")));
    let missing = |sysroot: &Path| -> Vec<&str> {
        TARGETS
            .into_iter()
            .filter(|t| !has_std(sysroot, t))
            .collect()
    };
    let absent = missing(&sysroot);
    if absent.is_empty() {
        return;
    }
    let list = absent.join(" ");
    let names = absent.join(" and ");
    let Some(toolchain) = std::env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        stop(&format!(
            "the plugins are built for {names}, whose standard library is not installed \
             for this compiler ({rustc}, sysroot {}). With rustup, run\n\n    \
             rustup target add {list}\n\nWithout rustup, install your distribution's \
             package of the standard library for {names}, or install Rust with rustup \
             (https://rustup.rs), which reads rust-toolchain.toml",
            sysroot.display()
        ));
    };
    println!(
        "cargo:warning=adding the targets the plugins are built for to toolchain {toolchain}: \
         rustup target add --toolchain {toolchain} {list}"
    );
    let rustup = rustup();
    let added = Command::new(&rustup)
        .args(["target", "add", "--toolchain", &toolchain])
        .args(&absent)
        .output();
    let failure = match added {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Some(format!("cannot run {}: {e}", rustup.display())),
    };
    if failure.is_some() || !missing(&sysroot).is_empty() {
        stop(&format!(
            "the plugins are built for {names}, which toolchain {toolchain} lacks, and \
             `rustup target add --toolchain {toolchain} {list}` did not add them; run it \
             yourself and build again{}",
            failure.map_or_else(String::new, |f| format!(". rustup said:\n{}", f.trim_end()))
        ));
    }
}

/// Whether `sysroot` holds the standard library for `target` (its `core`).
fn has_std(sysroot: &Path, target: &str) -> bool {
    let lib = sysroot.join("lib/rustlib").join(target).join("lib");
    std::fs::read_dir(lib).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libcore-") && name.ends_with(".rlib")
        })
    })
}

/// The `rustup` beside the proxies that started this build (`$CARGO_HOME/bin`),
/// else the one on `PATH`.
fn rustup() -> PathBuf {
    let exe = format!("rustup{}", std::env::consts::EXE_SUFFIX);
    std::env::var_os("CARGO_HOME")
        .map(|home| PathBuf::from(home).join("bin").join(&exe))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(exe))
}

/// Ends the build script with `message`, which cargo shows under the
/// failed build command.
fn stop(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// Builds the plugin crates `stems` (file stems: `_` for `-`) of the plugins
/// workspace for `target`, in release.
fn build_plugins(plugins: &Path, target_dir: &Path, target: &str, stems: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args(["build", "--release", "--target", target, "--target-dir"])
        .arg(target_dir);
    for stem in stems {
        cmd.args(["-p", &stem.replace('_', "-")]);
    }
    // Settings of the outer build that must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_PROFILE_RELEASE_INCREMENTAL",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("cannot run cargo to build the plugins");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains(target) && stderr.contains("target may not be installed") {
            format!("\nhint: run `rustup target add {target}` (rust-toolchain.toml lists it)\n")
        } else {
            String::new()
        };
        panic!(
            "building the plugins in {} for {target} failed:\n{stderr}{hint}",
            plugins.display()
        );
    }
}

fn copy(from: &Path, to: &Path, stem: &str) -> PathBuf {
    let src = from.join(format!("{stem}.wasm"));
    let dest = to.join(format!("{stem}.wasm"));
    std::fs::copy(&src, &dest).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
    dest
}
