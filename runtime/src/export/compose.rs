//! Wires the components of an export together with `wac-graph`.

use wac_graph::types::{ItemKind, Package};
use wac_graph::{CompositionGraph, EncodeOptions, NodeId, PackageId};

const TENSOR: &str = "tensorlet:ml/tensor@0.2.0";
/// Records only; learner and model plugins import it.
const TYPES: &str = "tensorlet:ml/types@0.2.0";
const PREPROCESS: &str = "tensorlet:ml/preprocess@0.2.0";
const PREDICT: &str = "tensorlet:ml/predict@0.2.0";
/// What a `model` plugin exports instead of `predict`.
const FORWARD: &str = "tensorlet:ml/forward@0.2.0";
/// Plugins built for the previous ABI import this; the export parts speak 0.2.
const TENSOR_V01: &str = "tensorlet:ml/tensor@0.1.0";
const MODEL_DATA: &str = "tensorlet:exported/model-data@0.1.0";
/// The handlers a front may export: WASI 0.2's and WASI 0.3's.
const HANDLER_PREFIXES: [&str; 2] = ["wasi:http/incoming-handler@0.2", "wasi:http/handler@0.3"];

/// The most preprocessors a chain may have: the front imports the first as
/// `tensorlet:ml/preprocess` and the others as `stage-2` … `stage-8` (see
/// `wit/export/front.wit`).
pub(crate) const MAX_PREPROCESSORS: usize = 8;

/// The front's import of preprocessor `i` (from 0).
fn stage_import(i: usize) -> String {
    match i {
        0 => PREPROCESS.to_string(),
        _ => format!("stage-{}", i + 1),
    }
}

/// The components to compose.
pub(crate) struct Inputs<'a> {
    pub tensor: &'a [u8],
    /// The preprocessors in chain order (section name, component): at least
    /// one, at most [`MAX_PREPROCESSORS`].
    pub preprocessors: &'a [(String, &'a [u8])],
    pub predictor: &'a [u8],
    pub data: &'a [u8],
    pub front: &'a [u8],
    /// Put between a `model` predictor and the front.
    pub forward_predict: &'a [u8],
}

/// A plugin that cannot be composed (told to the user), or anything else.
pub(crate) enum Error {
    Plugin(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Other(e)
    }
}

fn other(e: impl Into<anyhow::Error>) -> Error {
    Error::Other(e.into())
}

fn register(graph: &mut CompositionGraph, name: &str, bytes: &[u8]) -> Result<PackageId, Error> {
    let pkg = Package::from_bytes(name, None, bytes.to_vec(), graph.types_mut()).map_err(other)?;
    graph.register_package(pkg).map_err(other)
}

/// Names of a package's imports.
fn imports(graph: &CompositionGraph, pkg: PackageId) -> Vec<String> {
    let ty = graph[pkg].ty();
    graph.types()[ty].imports.keys().cloned().collect()
}

/// Refuses a plugin whose imports a `wasi:http` host would not provide:
/// anything but `tensorlet:ml/tensor` (and its `types`) and WASI 0.2 (wasi:nn is not part of it).
fn check_plugin(graph: &CompositionGraph, pkg: PackageId, stage: &str) -> Result<(), Error> {
    for name in imports(graph, pkg) {
        if name == TENSOR_V01 {
            return Err(Error::Plugin(format!(
                "its {stage} was built for tensorlet's previous plugin ABI (it imports \
                 `{TENSOR_V01}`), and exported models compose plugins of ABI 0.2; rebuild it \
                 with the current SDK and publish it again (it still trains, predicts and \
                 serves in tensorlet as it is)"
            )));
        }
        let portable = name == TENSOR
            || name == TYPES
            || (name.starts_with("wasi:")
                && !name.starts_with("wasi:nn/")
                && name.contains("@0.2"));
        if !portable {
            return Err(Error::Plugin(format!(
                "its {stage} imports `{name}`, which a wasi:http host does not provide; only \
                 plugins that import tensorlet:ml/tensor and WASI 0.2 can be exported (a wasi:nn \
                 predictor cannot)"
            )));
        }
    }
    Ok(())
}

fn instantiate(
    graph: &mut CompositionGraph,
    pkg: PackageId,
    args: &[(&str, NodeId)],
) -> Result<NodeId, Error> {
    let inst = graph.instantiate(pkg);
    for (name, node) in args {
        // A component that does not import an interface simply does not get it.
        if imports(graph, pkg).iter().any(|i| i == name) {
            graph
                .set_instantiation_argument(inst, name, *node)
                .map_err(other)?;
        }
    }
    Ok(inst)
}

fn alias(
    graph: &mut CompositionGraph,
    inst: NodeId,
    name: &str,
    what: &str,
) -> Result<NodeId, Error> {
    graph
        .alias_instance_export(inst, name)
        .map_err(|e| Error::Plugin(format!("its {what} does not export {name}: {e}")))
}

/// One component: `wasi:http/incoming-handler` from the front, every other
/// import of the parts (WASI 0.2) left as an import of the whole.
pub(crate) fn compose(inputs: &Inputs<'_>) -> Result<Vec<u8>, Error> {
    let mut graph = CompositionGraph::new();
    let n = inputs.preprocessors.len();
    if n == 0 || n > MAX_PREPROCESSORS {
        return Err(other(anyhow::anyhow!(
            "{n} preprocessors; an export composes 1 to {MAX_PREPROCESSORS}"
        )));
    }
    let tensor = register(&mut graph, "tensorlet:tensor-cpu", inputs.tensor)?;
    // Each distinct component once: stages that share a plugin (an imputer
    // on two sets of columns) share its package and its instance, as
    // `transform` is a function of its arguments.
    let mut packages: Vec<(&[u8], PackageId, String)> = Vec::new();
    for (i, (section, bytes)) in inputs.preprocessors.iter().enumerate() {
        if packages.iter().any(|(b, _, _)| b == bytes) {
            continue;
        }
        let (name, what) = match n {
            1 => (
                "tensorlet:preprocessor".to_string(),
                "preprocessor".to_string(),
            ),
            _ => (format!("tensorlet:preprocessor-{}", i + 1), section.clone()),
        };
        let pkg = register(&mut graph, &name, bytes)?;
        packages.push((bytes, pkg, what));
    }
    let pred = register(&mut graph, "tensorlet:predictor", inputs.predictor)?;
    let data = register(&mut graph, "tensorlet:model-store", inputs.data)?;
    let front = register(&mut graph, "tensorlet:http-front", inputs.front)?;
    for (_, pkg, what) in &packages {
        check_plugin(&graph, *pkg, what)?;
    }
    check_plugin(&graph, pred, "predictor")?;

    let tensor_inst = instantiate(&mut graph, tensor, &[])?;
    let tensor_iface = alias(&mut graph, tensor_inst, TENSOR, "tensor component")?;
    let types_iface = alias(&mut graph, tensor_inst, TYPES, "tensor component")?;
    let plugin_args = [(TENSOR, tensor_iface), (TYPES, types_iface)];
    let mut instances = Vec::with_capacity(packages.len());
    for (bytes, pkg, what) in &packages {
        let inst = instantiate(&mut graph, *pkg, &plugin_args)?;
        let preprocess = alias(&mut graph, inst, PREPROCESS, what)?;
        instances.push((*bytes, preprocess));
    }
    let stages: Vec<NodeId> = inputs
        .preprocessors
        .iter()
        .map(|(_, bytes)| {
            instances
                .iter()
                .find(|(b, _)| b == bytes)
                .map(|(_, node)| *node)
                .expect("every preprocessor was instantiated")
        })
        .collect();
    let pred_inst = instantiate(&mut graph, pred, &plugin_args)?;
    let is_model = graph.types()[graph[pred].ty()]
        .exports
        .keys()
        .any(|name| name == FORWARD);
    let predict = if is_model {
        // A `model` plugin: the adapter turns its `forward` into `predict`.
        let forward = alias(&mut graph, pred_inst, FORWARD, "predictor")?;
        let adapter = register(
            &mut graph,
            "tensorlet:forward-predict",
            inputs.forward_predict,
        )?;
        let adapter_inst = instantiate(
            &mut graph,
            adapter,
            &[
                (TENSOR, tensor_iface),
                (TYPES, types_iface),
                (FORWARD, forward),
            ],
        )?;
        alias(&mut graph, adapter_inst, PREDICT, "forward-predict adapter")?
    } else {
        alias(&mut graph, pred_inst, PREDICT, "predictor")?
    };
    let data_inst = instantiate(&mut graph, data, &[])?;
    let model_data = alias(&mut graph, data_inst, MODEL_DATA, "model-store")?;
    // A stage the model does not have gets the first preprocessor: the front
    // calls only the stages `model.json` lists.
    let stage_imports: Vec<String> = (0..MAX_PREPROCESSORS).map(stage_import).collect();
    let mut front_args = vec![
        (TENSOR, tensor_iface),
        (PREDICT, predict),
        (MODEL_DATA, model_data),
    ];
    front_args.extend(
        stage_imports
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), stages.get(i).copied().unwrap_or(stages[0]))),
    );
    let front_inst = instantiate(&mut graph, front, &front_args)?;
    let handler = graph.types()[graph[front].ty()]
        .exports
        .iter()
        .find(|(name, kind)| {
            HANDLER_PREFIXES.iter().any(|p| name.starts_with(p))
                && matches!(kind, ItemKind::Instance(_))
        })
        .map(|(name, _)| name.clone())
        .ok_or_else(|| {
            other(anyhow::anyhow!(
                "the front exports neither {}.x nor {}.x",
                HANDLER_PREFIXES[0],
                HANDLER_PREFIXES[1]
            ))
        })?;
    let handler_node = alias(&mut graph, front_inst, &handler, "front")?;
    graph.export(handler_node, &handler).map_err(other)?;
    graph.encode(EncodeOptions::default()).map_err(other)
}
