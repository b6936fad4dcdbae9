//! A Spin application manifest (`spin.toml`) for an exported component.
//!
//! Spin's HTTP trigger runs a component that exports exactly one HTTP handler
//! it knows: `wasi:http/incoming-handler@0.2.x` (what an export is),
//! `wasi:http/handler@0.3.x`, or Spin's own `fermyon:spin/inbound-http`; it
//! refuses a component that exports none, or more than one. [`spin_toml`]
//! checks that before writing a manifest: one `[[trigger.http]]` on every
//! route (`/...`) and one component with no outbound hosts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ExportError;

/// Export-name prefixes of the HTTP handlers Spin's trigger recognises.
const SPIN_HANDLERS: &[&str] = &[
    "wasi:http/incoming-handler@0.2",
    "wasi:http/handler@0.3",
    "fermyon:spin/inbound-http",
];

/// What the manifest says about one export.
#[derive(Clone, Copy, Debug)]
pub struct SpinApp<'a> {
    /// The name it is served under (`/v2/models/{name}`); the application name.
    pub served_name: &'a str,
    /// The model version; the application version.
    pub version: &'a str,
    /// The model reference, `ns/name@version`, for the description.
    pub model: &'a str,
    /// The component's path as the manifest names it (relative to the
    /// manifest's directory, or absolute).
    pub source: &'a str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    spin_manifest_version: u32,
    application: Application<'a>,
    trigger: Triggers,
    component: BTreeMap<String, Component<'a>>,
}

#[derive(Serialize)]
struct Application<'a> {
    name: &'a str,
    version: &'a str,
    description: String,
}

#[derive(Serialize)]
struct Triggers {
    http: Vec<HttpTrigger>,
}

#[derive(Serialize)]
struct HttpTrigger {
    route: &'static str,
    component: String,
}

#[derive(Serialize)]
struct Component<'a> {
    source: &'a str,
    allowed_outbound_hosts: Vec<String>,
}

/// The HTTP handlers Spin would find among a component's exports.
pub fn spin_handlers(component: &[u8]) -> Result<Vec<String>, ExportError> {
    if !wasmparser::Parser::is_component(component) {
        return Err(ExportError::Inspect("not a component".to_string()));
    }
    let decoded = wit_component::decode(component)
        .map_err(|e| ExportError::Inspect(format!("not a component: {e:#}")))?;
    let resolve = decoded.resolve();
    let wit_component::DecodedWasm::Component(_, world) = &decoded else {
        return Err(ExportError::Inspect(
            "a WIT package, not a component".to_string(),
        ));
    };
    Ok(resolve.worlds[*world]
        .exports
        .keys()
        .map(|key| resolve.name_world_key(key))
        .filter(|name| SPIN_HANDLERS.iter().any(|p| name.starts_with(p)))
        .collect())
}

/// A Spin component id (Spin's kebab-case `KebabId`: lowercase words of
/// letters and digits, each starting with a letter, joined by `-`) for a
/// served name: other characters separate words, and a word that starts with
/// a digit joins the word before it.
pub fn component_id(served_name: &str) -> String {
    let mut id = String::new();
    for word in served_name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            if id.is_empty() {
                id.push_str("model");
            }
        } else if !id.is_empty() {
            id.push('-');
        }
        id.push_str(&word);
    }
    if id.is_empty() {
        id.push_str("model");
    }
    id
}

/// The `spin.toml` of one exported component, after checking that Spin's
/// HTTP trigger would accept the component (`component` is its bytes).
pub fn spin_toml(app: &SpinApp<'_>, component: &[u8]) -> Result<String, ExportError> {
    match spin_handlers(component)?.as_slice() {
        [_] => {}
        [] => {
            return Err(ExportError::Inspect(format!(
                "Spin cannot run it: it exports no HTTP handler Spin knows ({})",
                SPIN_HANDLERS.join(", ")
            )));
        }
        many => {
            return Err(ExportError::Inspect(format!(
                "Spin cannot run it: it exports {} HTTP handlers ({}), and Spin runs a \
                 component that exports exactly one",
                many.len(),
                many.join(", ")
            )));
        }
    }
    let id = component_id(app.served_name);
    let manifest = Manifest {
        spin_manifest_version: 2,
        application: Application {
            name: app.served_name,
            version: app.version,
            description: format!(
                "{} exported by tensorlet: the Open Inference Protocol under /v2",
                app.model
            ),
        },
        trigger: Triggers {
            http: vec![HttpTrigger {
                route: "/...",
                component: id.clone(),
            }],
        },
        component: BTreeMap::from([(
            id,
            Component {
                source: app.source,
                allowed_outbound_hosts: Vec::new(),
            },
        )]),
    };
    let body = toml::to_string(&manifest).map_err(|e| ExportError::Inspect(e.to_string()))?;
    Ok(format!(
        "# The Spin application of {model}, written by `tensorlet export --spin-toml`.\n\
         # `spin up` serves it; `spin registry push <registry>/<name>:<tag>` publishes it\n\
         # for SpinKube (see docs/deploy-wasm-platforms.md).\n\n{body}",
        model = app.model
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_are_spin_kebab_ids() {
        assert_eq!(component_id("iris-model"), "iris-model");
        assert_eq!(component_id("Iris_Model.v2"), "iris-model-v2");
        assert_eq!(component_id("iris-2"), "iris2");
        assert_eq!(component_id("3d--points"), "model3d-points");
        assert_eq!(component_id("--"), "model");
    }

    /// `package wasi:http@0.2.6;` with `incoming-handler`, and 0.3.0 with `handler`.
    const HTTP: [&str; 2] = [
        "package wasi:http@0.2.6; interface incoming-handler { handle: func(); }",
        "package wasi:http@0.3.0; interface handler { handle: func(); }",
    ];

    /// A component of world `t:w/w` (`wit`, after the [`HTTP`] packages)
    /// exporting `handle: func()` from each interface in `exports`.
    fn component_exporting(wit: &str, exports: &[&str]) -> Vec<u8> {
        use wasm_encoder::{CodeSection, ExportKind, ExportSection, Function, FunctionSection};
        use wasm_encoder::{Module, TypeSection};
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut funcs = FunctionSection::new();
        let mut names = ExportSection::new();
        let mut code = CodeSection::new();
        for (i, name) in exports.iter().enumerate() {
            funcs.function(0);
            names.export(&format!("{name}#handle"), ExportKind::Func, i as u32);
            let mut body = Function::new([]);
            body.instructions().end();
            code.function(&body);
        }
        let mut module = Module::new();
        module
            .section(&types)
            .section(&funcs)
            .section(&names)
            .section(&code);
        let mut core = module.finish();
        let mut resolve = wit_parser::Resolve::default();
        for (i, http) in HTTP.iter().enumerate() {
            resolve.push_str(format!("http{i}.wit"), http).unwrap();
        }
        let pkg = resolve.push_str("test.wit", wit).unwrap();
        let world = resolve.select_world(&[pkg], Some("t:w/w")).unwrap();
        wit_component::embed_component_metadata(
            &mut core,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .unwrap();
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&core)
            .unwrap()
            .encode()
            .unwrap()
    }

    const APP: SpinApp<'static> = SpinApp {
        served_name: "iris-model",
        version: "0.1.0",
        model: "tensorlet/iris-model@0.1.0",
        source: "iris.wasm",
    };

    #[test]
    fn spin_runs_a_component_with_exactly_one_http_handler() {
        let wit = "package t:w;
            world w {
                export wasi:http/incoming-handler@0.2.6;
                export wasi:http/handler@0.3.0;
                export other;
            }
            interface other { handle: func(); }";
        let both = component_exporting(
            wit,
            &[
                "wasi:http/incoming-handler@0.2.6",
                "wasi:http/handler@0.3.0",
                "t:w/other",
            ],
        );
        assert_eq!(
            spin_handlers(&both).unwrap(),
            [
                "wasi:http/incoming-handler@0.2.6",
                "wasi:http/handler@0.3.0"
            ]
        );
        let err = spin_toml(&APP, &both).unwrap_err().to_string();
        assert!(err.contains("exports 2 HTTP handlers"), "{err}");

        let none = component_exporting(
            "package t:w; world w { export other; } interface other { handle: func(); }",
            &["t:w/other"],
        );
        assert!(spin_handlers(&none).unwrap().is_empty());
        let err = spin_toml(&APP, &none).unwrap_err().to_string();
        assert!(err.contains("no HTTP handler Spin knows"), "{err}");

        let one = component_exporting(
            "package t:w; world w { export wasi:http/incoming-handler@0.2.6; }",
            &["wasi:http/incoming-handler@0.2.6"],
        );
        let manifest: toml::Table = spin_toml(&APP, &one).unwrap().parse().unwrap();
        assert_eq!(manifest["spin_manifest_version"].as_integer(), Some(2));
        assert_eq!(manifest["application"]["name"].as_str(), Some("iris-model"));
        let trigger = manifest["trigger"]["http"].as_array().unwrap();
        assert_eq!(trigger.len(), 1);
        assert_eq!(trigger[0]["route"].as_str(), Some("/..."));
        assert_eq!(trigger[0]["component"].as_str(), Some("iris-model"));
        let component = &manifest["component"]["iris-model"];
        assert_eq!(component["source"].as_str(), Some("iris.wasm"));
        assert_eq!(
            component["allowed_outbound_hosts"].as_array().map(Vec::len),
            Some(0)
        );
    }

    #[test]
    fn a_core_module_is_not_a_spin_component() {
        let core = wasm_encoder::Module::new().finish();
        assert!(spin_handlers(&core).is_err());
    }
}
