//! `tensorlet bench instances`: what per-request isolation costs, the
//! fresh store and instance every plugin call gets, beside a whole warm
//! request's compute.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use tensorlet_registry::Registry;
use wasm_encoder::{
    CodeSection, ExportKind, ExportSection, Function, FunctionSection, MemorySection, MemoryType,
    Module, TypeSection,
};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::{Plugin, Runtime};

/// The plugins whose instantiation is timed.
pub const PLUGINS: [&str; 3] = ["standardize", "softmax-regression", "mlp"];

/// Times `n` instantiations of each of [`PLUGINS`] and `n` iris-sized
/// requests (standardize's transform + softmax-regression's predict, each
/// in a fresh instance, as the server runs them), writing a line each.
/// `bundled` gives a bundled plugin's component by name; they are loaded
/// through a throwaway registry's unsigned path, so the real audit log is
/// left alone.
pub fn run(
    rt: &Runtime,
    n: u32,
    bundled: &dyn Fn(&str) -> Option<&'static [u8]>,
    out: &mut dyn Write,
) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let reg = Registry::open(scratch.path())?;
    let load = |name: &str| -> Result<Plugin> {
        let bytes = bundled(name).with_context(|| format!("`{name}` is not bundled"))?;
        Ok(rt.load(&reg.allow_unsigned(name, bytes.to_vec())?)?)
    };
    let n = n.max(1);
    writeln!(
        out,
        "fresh instance per call (pooling allocator), {n} iterations each:"
    )?;
    let floor = empty_instantiation(rt, n)?;
    writeln!(
        out,
        "  {:<20} {:>7.2} µs per instance (wasmtime's own cost: no imports, one empty function)",
        "an empty component",
        floor * 1e6
    )?;
    for name in PLUGINS {
        let per = instantiation(&load(name)?, n)?;
        writeln!(out, "  {name:<20} {:>7.2} µs per instance", per * 1e6)?;
    }
    // Iris-sized input: 2 rows, 4 features, 3 classes.
    let dev = rt.device();
    let (pre, pred) = (load("standardize")?, load("softmax-regression")?);
    let x = dev.from_vec(&[2, 4], vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])?;
    let state = pre.fit("{}", &x)?;
    let params = vec![
        ("w".to_string(), dev.fill(&[4, 3], 0.1)?),
        ("b".to_string(), dev.fill(&[3], 0.0)?),
    ];
    let per = per_call(n, || -> crate::Result<()> {
        let xt = pre.transform("{}", &state, &x)?;
        pred.predict("{}", &params, &xt)?;
        Ok(())
    })?;
    writeln!(
        out,
        "  a request's compute (transform + predict, 2 rows): {:.2} µs",
        per * 1e6
    )?;
    Ok(())
}

/// Mean seconds of one `Store::new` + `InstancePre::instantiate` of
/// `plugin` over `n` instances, after 100 to warm up.
pub fn instantiation(plugin: &Plugin, n: u32) -> crate::Result<f64> {
    for _ in 0..100 {
        plugin.instantiate_once()?;
    }
    let start = Instant::now();
    for _ in 0..n {
        plugin.instantiate_once()?;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(n))
}

/// A component with one page of memory and one empty exported function
/// (`export f: func();`), no imports: what wasmtime itself costs per fresh
/// instance on this engine, whatever the plugin does.
fn empty_component() -> Result<Vec<u8>> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("f", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instructions().end();
    code.function(&body);
    module
        .section(&types)
        .section(&funcs)
        .section(&memories)
        .section(&exports)
        .section(&code);
    let mut core = module.finish();
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str(
        "empty.wit",
        "package bench:empty; world empty { export f: func(); }",
    )?;
    let world = resolve.select_world(&[pkg], Some("empty"))?;
    wit_component::embed_component_metadata(
        &mut core,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&core)?
        .encode()
}

/// Mean seconds of one `Store::new` + instantiation + drop of
/// [`empty_component`] on the runtime's engine, over `n` instances.
pub fn empty_instantiation(rt: &Runtime, n: u32) -> Result<f64> {
    let engine = rt.engine();
    let component = Component::new(engine, empty_component()?)?;
    let pre = Linker::<()>::new(engine).instantiate_pre(&component)?;
    per_call(n, || -> wasmtime::Result<()> {
        let mut store = Store::new(engine, ());
        pre.instantiate(&mut store)?;
        Ok(())
    })
    .map_err(anyhow::Error::from)
}

/// Mean seconds of `call` over `n` calls, after 100 to warm up.
pub fn per_call<E>(n: u32, mut call: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    for _ in 0..100 {
        call()?;
    }
    let start = Instant::now();
    for _ in 0..n {
        call()?;
    }
    Ok(start.elapsed().as_secs_f64() / f64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_averages_after_warming_up_and_stops_at_an_error() {
        let mut calls = 0;
        let per = per_call(50, || -> Result<(), ()> {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 150);
        assert!(per >= 0.0);
        let mut left = 3;
        let failed = per_call(50, || {
            left -= 1;
            if left == 0 { Err("third call") } else { Ok(()) }
        });
        assert_eq!(failed, Err("third call"));
    }

    #[test]
    fn the_empty_component_instantiates_and_exports_one_function() {
        let rt = Runtime::new(crate::RuntimeConfig::default()).unwrap();
        let engine = rt.engine();
        let component = Component::new(engine, empty_component().unwrap()).unwrap();
        let pre = Linker::<()>::new(engine)
            .instantiate_pre(&component)
            .unwrap();
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(1_000_000);
        let instance = pre.instantiate(&mut store).unwrap();
        let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
        f.call(&mut store, ()).unwrap();
        assert_eq!(component.component_type().exports(engine).count(), 1);
        assert!(empty_instantiation(&rt, 10).unwrap() > 0.0);
    }
}
