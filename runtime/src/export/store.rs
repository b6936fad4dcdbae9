//! The generated `model-store` component: one model's bytes as data.
//!
//! A core module whose memory is initialised with the blobs (one active data
//! segment) and whose four exports each return a pointer to a `(ptr, len)`
//! pair, which is exactly how the canonical ABI returns a `list<u8>` or a
//! `string`. `wit-component` wraps it into a component exporting
//! `tensorlet:exported/model-data`. Nothing runs at instantiation; a call
//! copies the bytes out.

use anyhow::Context;
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection,
    Instruction, MemorySection, MemoryType, Module, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The interface and world the module implements.
const WIT: &str = include_str!("../../../wit/export/model.wit");
const INTERFACE: &str = "tensorlet:exported/model-data@0.1.0";
const PAGE: usize = 65536;
/// Where the four `(ptr, len)` pairs live; the blobs follow from `DATA_START`.
const PAIRS: usize = 16;
const DATA_START: usize = 64;

/// Builds the `model-store` component for these blobs.
pub(crate) fn model_store(
    info: &str,
    meta: &[u8],
    params: &[u8],
    state: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let functions: [(&str, &[u8]); 4] = [
        ("info", info.as_bytes()),
        ("meta", meta),
        ("params", params),
        ("state", state),
    ];
    // Memory image: pairs, then each blob 8-byte aligned.
    let mut image = vec![0u8; DATA_START];
    for (i, (_, blob)) in functions.iter().enumerate() {
        let at = image.len();
        image.extend_from_slice(blob);
        image.resize(image.len().next_multiple_of(8), 0);
        let pair = PAIRS + 8 * i;
        let ptr = u32::try_from(at).context("the model is over 4 GiB")?;
        let len = u32::try_from(blob.len()).context("the model is over 4 GiB")?;
        image[pair..pair + 4].copy_from_slice(&ptr.to_le_bytes());
        image[pair + 4..pair + 8].copy_from_slice(&len.to_le_bytes());
    }
    let pages = image.len().div_ceil(PAGE) as u64;

    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    for _ in &functions {
        funcs.function(0);
    }
    module.section(&funcs);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: Some(pages),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    for (i, (name, _)) in functions.iter().enumerate() {
        exports.export(&format!("{INTERFACE}#{name}"), ExportKind::Func, i as u32);
    }
    module.section(&exports);
    let mut code = CodeSection::new();
    for i in 0..functions.len() {
        let mut f = Function::new([]);
        f.instruction(&Instruction::I32Const((PAIRS + 8 * i) as i32));
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    module.section(&code);
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(0), image);
    module.section(&data);
    let mut core = module.finish();

    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str("wit/export/model.wit", WIT)
        .context("parsing the model-data WIT")?;
    let world = resolve.select_world(&[pkg], Some("model-store"))?;
    wit_component::embed_component_metadata(&mut core, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&core)?
        .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_a_valid_component_exporting_model_data() {
        let c = model_store("{\"name\":\"m\"}", b"meta", &[1, 2, 3], &[]).unwrap();
        let mut validator = wasmparser::Validator::new();
        validator.validate_all(&c).unwrap();
        let text = String::from_utf8_lossy(&c);
        assert!(text.contains("tensorlet:exported/model-data@0.1.0"));
    }
}
