//! What a wasm file is, without any config: component or core module, its
//! imports and exports, whether this host can run it as a plugin (and if not,
//! why), and which capability grants its imports call for.

use serde::Serialize;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, types};

use super::{HostError, PluginAbi, PluginHost, bindings, core_imports, detect_abi};

/// Interfaces of the `hookwise:plugin` package the host provides.
const HOST_INTERFACES: &[&str] = &[
    "hookwise:plugin/log",
    "hookwise:plugin/db",
    "hookwise:plugin/types",
];
/// The core module WASI preview 1 command modules import from.
const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// A capability grant that a plugin's imports call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// `allow.http`: it imports `wasi:http/outgoing-handler`.
    Http,
    /// `allow.db`: it imports `hookwise:plugin/db`.
    Db,
}

impl Capability {
    /// The config key that grants it.
    pub fn config_key(self) -> &'static str {
        match self {
            Capability::Http => "allow.http",
            Capability::Db => "allow.db",
        }
    }
}

/// One import or export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `wasi:io/streams@0.2.0`, `handle`, or `module::name` for core modules.
    pub name: String,
    /// `instance`, `func`, `type`, `resource`, `module`, `component`,
    /// `core-func`; for core modules `func`, `memory`, `table`, `global`, `tag`.
    pub kind: &'static str,
    /// Functions of an instance (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
}

/// The result of inspecting one wasm file.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub abi: PluginAbi,
    pub sha256: String,
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
    /// Whether this host can load it as a plugin.
    pub fits: bool,
    /// Why it does not fit (empty when it fits).
    pub problems: Vec<String>,
    /// Grants its imports call for.
    pub needs: Vec<Capability>,
    /// The JSON Schema of its input, when it declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
}

/// Imports of interface `name` (`ns:pkg/iface@version`), without the version.
fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn component_item(name: &str, item: &ComponentItem, engine: &wasmtime::Engine) -> Item {
    let (kind, functions) = match item {
        ComponentItem::ComponentInstance(instance) => {
            ("instance", instance_functions(instance, engine))
        }
        ComponentItem::ComponentFunc(_) => ("func", Vec::new()),
        ComponentItem::CoreFunc(_) => ("core-func", Vec::new()),
        ComponentItem::Module(_) => ("module", Vec::new()),
        ComponentItem::Component(_) => ("component", Vec::new()),
        ComponentItem::Type(_) => ("type", Vec::new()),
        ComponentItem::Resource(_) => ("resource", Vec::new()),
    };
    Item {
        name: name.to_string(),
        kind,
        functions,
    }
}

fn instance_functions(
    instance: &types::ComponentInstance,
    engine: &wasmtime::Engine,
) -> Vec<String> {
    instance
        .exports(engine)
        .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name.to_string())
        .collect()
}

fn core_kind(ty: &wasmtime::ExternType) -> &'static str {
    match ty {
        wasmtime::ExternType::Func(_) => "func",
        wasmtime::ExternType::Memory(_) => "memory",
        wasmtime::ExternType::Table(_) => "table",
        wasmtime::ExternType::Global(_) => "global",
        wasmtime::ExternType::Tag(_) => "tag",
    }
}

impl PluginHost {
    /// Compiles `bytes` (nothing is cached or run) and reports what it is and
    /// whether it fits this host. Errors only when the bytes are not wasm.
    /// `name` only labels errors.
    pub fn inspect(&self, name: &str, bytes: &[u8]) -> Result<Inspection, HostError> {
        let mut inspection = self.inspect_abi(name, bytes)?;
        match crate::schema::InputSchema::declared_in(bytes) {
            Ok(declared) => inspection.input_schema = declared.map(|s| s.schema().clone()),
            Err(e) => {
                inspection.problems.push(e);
                inspection.fits = false;
            }
        }
        Ok(inspection)
    }

    fn inspect_abi(&self, name: &str, bytes: &[u8]) -> Result<Inspection, HostError> {
        let name = name.to_string();
        let engine = &self.inner.engine;
        let sha256 = super::cache::sha256_hex(bytes);
        let compile_error = |e: wasmtime::Error| HostError::Compile {
            name: name.clone(),
            message: format!("{e:#}"),
        };
        match detect_abi(bytes) {
            None => Err(HostError::NotWasm { name }),
            Some(PluginAbi::Component) => {
                let component = Component::new(engine, bytes).map_err(compile_error)?;
                let ty = component.component_type();
                let imports: Vec<Item> = ty
                    .imports(engine)
                    .map(|(n, e)| component_item(n, &e.ty, engine))
                    .collect();
                let exports: Vec<Item> = ty
                    .exports(engine)
                    .map(|(n, e)| component_item(n, &e.ty, engine))
                    .collect();
                let mut problems = Vec::new();
                if !exports
                    .iter()
                    .any(|e| e.name == "handle" && e.kind == "func")
                {
                    problems.push(
                        "does not export the function `handle` of the hookwise:plugin/plugin world"
                            .to_string(),
                    );
                }
                for import in &imports {
                    let interface = unversioned(&import.name);
                    if !interface.starts_with("wasi:") && !HOST_INTERFACES.contains(&interface) {
                        problems.push(format!(
                            "imports `{}`, which the host does not provide",
                            import.name
                        ));
                    }
                }
                // The real check: link it as the host would (types included).
                let linked = self
                    .inner
                    .linker
                    .instantiate_pre(&component)
                    .and_then(bindings::PluginPre::new);
                if let Err(e) = linked
                    && problems.is_empty()
                {
                    problems.push(format!("cannot be linked by the host: {e:#}"));
                }
                let mut needs = Vec::new();
                if imports
                    .iter()
                    .any(|i| unversioned(&i.name) == "wasi:http/outgoing-handler")
                {
                    needs.push(Capability::Http);
                }
                if imports
                    .iter()
                    .any(|i| unversioned(&i.name) == "hookwise:plugin/db")
                {
                    needs.push(Capability::Db);
                }
                Ok(Inspection {
                    abi: PluginAbi::Component,
                    sha256,
                    imports,
                    exports,
                    fits: problems.is_empty(),
                    problems,
                    needs,
                    input_schema: None,
                })
            }
            Some(PluginAbi::Command) => {
                let module = wasmtime::Module::new(engine, bytes).map_err(compile_error)?;
                let imports: Vec<Item> = module
                    .imports()
                    .map(|i| Item {
                        name: format!("{}::{}", i.module(), i.name()),
                        kind: core_kind(&i.ty()),
                        functions: Vec::new(),
                    })
                    .collect();
                let exports: Vec<Item> = module
                    .exports()
                    .map(|e| Item {
                        name: e.name().to_string(),
                        kind: core_kind(&e.ty()),
                        functions: Vec::new(),
                    })
                    .collect();
                let mut problems = Vec::new();
                if !exports
                    .iter()
                    .any(|e| e.name == "_start" && e.kind == "func")
                {
                    problems.push("core module has no `_start` export (not a WASI command)".into());
                }
                let mut needs = Vec::new();
                for import in module.imports() {
                    let (from, name) = (import.module(), import.name());
                    if from == WASI_P1_MODULE {
                        continue;
                    }
                    if from != core_imports::MODULE {
                        problems.push(format!(
                            "imports `{from}::{name}`; a core module may only import \
                             {WASI_P1_MODULE} and {}",
                            core_imports::MODULE
                        ));
                    } else if !core_imports::FUNCTIONS.contains(&name) {
                        problems.push(format!(
                            "imports `{from}::{name}`, which the host does not provide (it \
                             provides {})",
                            core_imports::FUNCTIONS.join(", ")
                        ));
                    } else if let Some(capability) = core_imports::capability_of(name)
                        && !needs.contains(&capability)
                    {
                        needs.push(capability);
                    }
                }
                if let Err(e) = self.inner.command_linker.instantiate_pre(&module)
                    && problems.is_empty()
                {
                    problems.push(format!("cannot be linked by the host: {e:#}"));
                }
                Ok(Inspection {
                    abi: PluginAbi::Command,
                    sha256,
                    imports,
                    exports,
                    fits: problems.is_empty(),
                    problems,
                    needs,
                    input_schema: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ignored_when_matching_interfaces() {
        assert_eq!(
            unversioned("hookwise:plugin/db@0.1.0"),
            "hookwise:plugin/db"
        );
        assert_eq!(
            unversioned("wasi:http/outgoing-handler"),
            "wasi:http/outgoing-handler"
        );
    }
}
