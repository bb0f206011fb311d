//! Rollouts: how a new revision of a deployment reaches its replicas (`spec.rollout`), and where
//! a rollout stands. Pure data; the state machine is `reconcile::rollout`.
//!
//! A rollout moves replicas to the new revision in **waves** (cumulative shares of the
//! replicas: `[1, 10%, 50%, 100%]`). Within a wave at most `maxUnavailable` replicas are
//! switched and not yet Running. A wave is done when every replica it switched has been
//! Running at the new revision for `healthyFor` without a restart; then the next starts. A
//! replica that fails (Failed, or restarted at the new revision) `failureThreshold` times in
//! all, or a wave not done within `progressDeadline`, fails the rollout: every replica goes
//! back to the last good revision (the rollback), with an event saying why.

use serde::{Deserialize, Serialize};

use super::DeploymentSpec;

/// A number of replicas, absolute (`3`) or a share of them (`"10%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// This many replicas.
    Count(u32),
    /// This percentage of the replicas, rounded up.
    Percent(u32),
}

impl Share {
    /// How many of `n` replicas this is (a percentage rounds up, so `1%` of 10 is 1).
    pub fn of(self, n: u32) -> u32 {
        match self {
            Share::Count(c) => c.min(n),
            Share::Percent(p) => {
                let p = u64::from(p.min(100));
                u32::try_from((u64::from(n) * p).div_ceil(100)).unwrap_or(n)
            }
        }
    }

    /// Parses `3` or `10%`.
    pub fn parse(text: &str) -> Result<Share, String> {
        let t = text.trim();
        let bad = || format!("{text:?} is neither a count nor a percentage like 10%");
        match t.strip_suffix('%') {
            Some(p) => {
                let p: u32 = p.trim().parse().map_err(|_| bad())?;
                if p == 0 || p > 100 {
                    return Err(format!("{text:?} must be from 1% to 100%"));
                }
                Ok(Share::Percent(p))
            }
            None => t.parse().map(Share::Count).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Share::Count(c) => write!(f, "{c}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Share {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Share::Count(c) => s.serialize_u32(*c),
            Share::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(c) => Ok(Share::Count(c)),
            Raw::Text(t) => Share::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// `spec.rollout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStrategy {
    /// Cumulative shares of the replicas on the new revision after each wave; the last is
    /// always all of them.
    pub waves: Vec<Share>,
    /// How long a wave's replicas must run without a restart before the next wave starts.
    pub healthy_for_ms: u64,
    /// Most replicas switched to the new revision and not yet Running at once.
    pub max_unavailable: Share,
    /// Failures of new-revision replicas (Failed, or a restart) that fail the rollout.
    pub failure_threshold: u32,
    /// How long one wave may take before the rollout fails.
    pub progress_deadline_ms: u64,
}

impl Default for RolloutStrategy {
    /// One wave, 25% of the replicas switched at a time (Kubernetes' rolling update), and an
    /// automatic rollback at the first failure: safe without configuration.
    fn default() -> Self {
        RolloutStrategy {
            waves: vec![Share::Percent(100)],
            healthy_for_ms: 10_000,
            max_unavailable: Share::Percent(25),
            failure_threshold: 1,
            progress_deadline_ms: 300_000,
        }
    }
}

impl RolloutStrategy {
    /// Checks what a manifest can get wrong; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.waves.is_empty() {
            return Err("spec.rollout.waves: at least one wave".into());
        }
        if self.waves.contains(&Share::Count(0)) {
            return Err("spec.rollout.waves: a wave of 0 replicas".into());
        }
        if self.max_unavailable == Share::Count(0) {
            return Err("spec.rollout.maxUnavailable must be at least 1".into());
        }
        if self.failure_threshold == 0 {
            return Err("spec.rollout.failureThreshold must be at least 1".into());
        }
        if self.progress_deadline_ms <= self.healthy_for_ms {
            return Err(
                "spec.rollout.progressDeadline must be longer than spec.rollout.healthyFor \
                 (a wave needs healthyFor to prove itself)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Replicas on the new revision once wave `i` is done, for `n` replicas: non-decreasing,
    /// at least 1, and all of them after the last wave.
    pub fn wave_target(&self, i: usize, n: u32) -> u32 {
        if i + 1 >= self.waves.len() {
            return n;
        }
        let floor = if i == 0 {
            0
        } else {
            self.wave_target(i - 1, n)
        };
        self.waves[i].of(n).max(1).max(floor).min(n)
    }

    /// Replicas that may be switched and not yet Running, for `n` replicas (at least 1).
    pub fn max_unavailable(&self, n: u32) -> u32 {
        self.max_unavailable.of(n).max(1)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutPhase {
    /// Moving replicas wave by wave.
    Progressing,
    /// Stopped by `rollout pause`; replicas stay where they are.
    Paused,
    /// Every replica runs the revision, healthy.
    Complete,
    /// A wave failed; the replicas went back to the last good revision.
    Failed,
}

impl RolloutPhase {
    /// As printed.
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutPhase::Progressing => "Progressing",
            RolloutPhase::Paused => "Paused",
            RolloutPhase::Complete => "Complete",
            RolloutPhase::Failed => "Failed",
        }
    }
}

/// A deployment's rollout of its current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The revision being rolled out.
    pub revision: u64,
    /// The last good revision: replicas not (yet) switched run it, and a failure goes back to
    /// it. None for a first deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<u64>,
    /// Index of the current wave.
    pub wave: u32,
    /// Replicas (the first ones, in workload order) switched to `revision`.
    pub updated: u32,
    /// When the current wave started, ms since the Unix epoch.
    pub wave_started_ms: u64,
    /// Where it stands.
    pub phase: RolloutPhase,
    /// Why (a failure's cause, a pause), for people.
    #[serde(default)]
    pub message: String,
}

impl RolloutStatus {
    /// Whether replica `index` (of the deployment's workloads in order) runs the rollout's
    /// revision rather than the stable one.
    pub fn runs_new(&self, index: u32) -> bool {
        match (self.stable, &self.phase) {
            (None, _) | (_, RolloutPhase::Complete) => true,
            (Some(_), RolloutPhase::Failed) => false,
            (Some(_), RolloutPhase::Progressing | RolloutPhase::Paused) => index < self.updated,
        }
    }
}

/// One entry of `rollout history`: a revision's template and why it came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// Revision number.
    pub revision: u64,
    /// Its spec (the template is all but `replicas` and `rollout`).
    pub spec: DeploymentSpec,
    /// What changed, e.g. `module sha256:1a2b3c4d5e6f → sha256:…; args`.
    pub cause: String,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
}

/// Revisions kept per deployment (`revisionHistoryLimit` in Kubernetes), besides the stable one.
pub const REVISION_HISTORY: usize = 10;

/// What differs between two templates, for `rollout history`.
pub fn change_cause(old: &DeploymentSpec, new: &DeploymentSpec) -> String {
    let mut parts = Vec::new();
    if old.module != new.module {
        parts.push(format!(
            "module sha256:{} → sha256:{}",
            &old.module[..12.min(old.module.len())],
            &new.module[..12.min(new.module.len())]
        ));
    }
    let fields: [(&str, bool); 10] = [
        ("args", old.args != new.args),
        ("env", old.env != new.env),
        ("config", old.config != new.config),
        ("resources.memory", old.memory_bytes != new.memory_bytes),
        ("resources.cpu", old.cpu_millis != new.cpu_millis),
        ("resources.maxRunTime", old.max_run_ms != new.max_run_ms),
        ("restartPolicy", old.restart_policy != new.restart_policy),
        ("namespace", old.namespace != new.namespace),
        ("capabilities", old.capabilities != new.capabilities),
        ("nodeSelector", old.node_selector != new.node_selector),
    ];
    parts.extend(
        fields
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(f, _)| (*f).to_string()),
    );
    if parts.is_empty() {
        "placement".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_and_round_up() {
        assert_eq!(Share::parse("10%"), Ok(Share::Percent(10)));
        assert_eq!(Share::parse("3"), Ok(Share::Count(3)));
        assert!(Share::parse("0%").unwrap_err().contains("1% to 100%"));
        assert!(Share::parse("ten").unwrap_err().contains("\"ten\""));
        assert_eq!(Share::Percent(10).of(5), 1);
        assert_eq!(Share::Percent(50).of(5), 3);
        assert_eq!(Share::Count(7).of(5), 5);
        let s: Vec<Share> = serde_json::from_str(r#"[1, "10%", "100%"]"#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"[1,"10%","100%"]"#);
    }

    #[test]
    fn waves_are_cumulative_non_decreasing_and_end_with_everyone() {
        let s = RolloutStrategy {
            waves: vec![
                Share::Count(1),
                Share::Percent(10),
                Share::Percent(50),
                Share::Percent(100),
            ],
            ..RolloutStrategy::default()
        };
        let targets: Vec<u32> = (0..4).map(|i| s.wave_target(i, 5)).collect();
        assert_eq!(targets, [1, 1, 3, 5]);
        let targets: Vec<u32> = (0..4).map(|i| s.wave_target(i, 100)).collect();
        assert_eq!(targets, [1, 10, 50, 100]);
        // A last wave that is not 100% still ends with every replica.
        let s = RolloutStrategy {
            waves: vec![Share::Count(2), Share::Percent(50)],
            ..RolloutStrategy::default()
        };
        assert_eq!(s.wave_target(1, 10), 10);
        assert_eq!(s.max_unavailable(1), 1);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RolloutStrategy {
            failure_threshold: 0,
            ..RolloutStrategy::default()
        };
        assert!(bad.validate().unwrap_err().contains("failureThreshold"));
        let bad = RolloutStrategy {
            waves: vec![],
            ..RolloutStrategy::default()
        };
        assert!(bad.validate().unwrap_err().contains("waves"));
        let bad = RolloutStrategy {
            healthy_for_ms: 60_000,
            progress_deadline_ms: 60_000,
            ..RolloutStrategy::default()
        };
        assert!(bad.validate().unwrap_err().contains("progressDeadline"));
    }
}
