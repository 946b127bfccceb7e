//! The first-party plugins compiled into the binary: `notify`, `call-api` and `write-db`,
//! built from `plugins/first-party` by `build.rs` and embedded as component bytes.

/// The embedded component of built-in plugin `name`, if there is one.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of the embedded plugins, in the order `config::BUILTIN_PLUGINS` lists them.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}

macro_rules! embedded {
    ($file:literal) => {
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/first-party/wasm32-wasip2/release/",
            $file
        ))
    };
}

static BUILTINS: [(&str, &[u8]); 3] = [
    ("notify", embedded!("notify.wasm")),
    ("call-api", embedded!("call_api.wasm")),
    ("write-db", embedded!("write_db.wasm")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_name_has_a_component() {
        for name in crate::config::BUILTIN_PLUGINS {
            let bytes = component(name).unwrap_or_default();
            // A component starts with the wasm magic and the component layer.
            assert!(bytes.starts_with(b"\0asm"), "{name} is not embedded");
        }
        assert_eq!(names().collect::<Vec<_>>(), crate::config::BUILTIN_PLUGINS);
    }
}
