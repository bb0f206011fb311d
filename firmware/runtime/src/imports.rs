//! Resolving a module's imports: the same rule as the Linux agent and the hub's `apply`. A
//! module may import only `wasmfleet_v1` functions of capabilities its deployment grants and
//! this node offers, with the ABI's signatures; anything else refuses the instance with a
//! message naming the import and what is missing.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use wasmtime::{Extern, ExternType, FuncType, Module, Store, ValType};

use crate::abi::{self, HostFn, IMPORT_MODULE, Val};
use crate::host::{self, Host};
use crate::platform::Platform;

/// Why a module's imports cannot be satisfied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// An import from another module than `wasmfleet_v1` (WASI, most often).
    #[error(
        "module imports `{module}::{name}`; microcontrollers offer only `{IMPORT_MODULE}` (no WASI)"
    )]
    ForeignModule {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// A `wasmfleet_v1` name the ABI does not have.
    #[error("module imports `{IMPORT_MODULE}::{0}`, which the host API does not have")]
    Unknown(String),
    /// A function of a capability the deployment does not grant.
    #[error(
        "module imports `{IMPORT_MODULE}::{name}` but the deployment does not grant `{field}`; add it to the manifest's capabilities"
    )]
    NotGranted {
        /// The function.
        name: String,
        /// The manifest field that would grant it.
        field: &'static str,
    },
    /// A function this node cannot provide.
    #[error("module imports `{IMPORT_MODULE}::{name}`, which this node does not offer: {why}")]
    NotOffered {
        /// The function.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The import is not a function, or not of the ABI's signature.
    #[error("module imports `{IMPORT_MODULE}::{name}` with the wrong type; the ABI has {expected}")]
    Signature {
        /// The function.
        name: String,
        /// The ABI's signature, as WAT.
        expected: String,
    },
}

/// The host functions for `module`'s imports, created in `store`, in import order.
pub(crate) fn resolve<P: Platform + 'static>(
    store: &mut Store<Host<P>>,
    module: &Module,
) -> Result<Vec<Extern>, ImportError> {
    let mut externs = Vec::new();
    for import in module.imports() {
        let name = import.name();
        if import.module() != IMPORT_MODULE {
            return Err(ImportError::ForeignModule {
                module: import.module().to_string(),
                name: name.to_string(),
            });
        }
        let f = abi::function(name).ok_or_else(|| ImportError::Unknown(name.to_string()))?;
        if !f
            .capability
            .granted_by(&store.data().api.workload.capabilities)
        {
            return Err(ImportError::NotGranted {
                name: name.to_string(),
                field: f.capability.field(),
            });
        }
        if let Some(why) = host::not_offered(&mut store.data_mut().platform, f.capability) {
            return Err(ImportError::NotOffered {
                name: name.to_string(),
                why,
            });
        }
        match import.ty() {
            ExternType::Func(ty) if signature_matches(&ty, f) => {}
            _ => {
                return Err(ImportError::Signature {
                    name: name.to_string(),
                    expected: wat_signature(f),
                });
            }
        }
        let func = host::func(store, name).ok_or_else(|| ImportError::Unknown(name.to_string()))?;
        externs.push(Extern::Func(func));
    }
    Ok(externs)
}

fn signature_matches(ty: &FuncType, f: &HostFn) -> bool {
    let same = |v: ValType, a: &Val| match a {
        Val::I32 => matches!(v, ValType::I32),
        Val::I64 => matches!(v, ValType::I64),
    };
    ty.params().len() == f.params.len()
        && ty.results().len() == f.results.len()
        && ty.params().zip(f.params).all(|(v, a)| same(v, a))
        && ty.results().zip(f.results).all(|(v, a)| same(v, a))
}

/// `(func (param i32 i32) (result i32))`.
fn wat_signature(f: &HostFn) -> String {
    let list = |vals: &[Val]| {
        vals.iter()
            .map(|v| match v {
                Val::I32 => " i32",
                Val::I64 => " i64",
            })
            .collect::<String>()
    };
    let mut s = String::from("(func");
    if !f.params.is_empty() {
        s += &alloc::format!(" (param{})", list(f.params));
    }
    if !f.results.is_empty() {
        s += &alloc::format!(" (result{})", list(f.results));
    }
    s + ")"
}
