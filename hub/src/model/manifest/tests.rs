//! Manifest parsing: the documented examples, and errors that name the field and line.

use super::*;

const HELLO: &str = "\
apiVersion: wasmfleet.dev/v1
kind: Deployment
metadata: {name: hello}
spec:
  module: ./hello.wasm
  replicas: 2
  args: [\"--interval\", \"1s\"]
  env: {GREETING: hi}
  resources: {memory: 16Mi, cpu: 250m, maxRunTime: 90s}
";

#[test]
fn parses_the_documented_example() {
    let d = parse(HELLO, Path::new("/apps")).unwrap();
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert_eq!(d.name, "hello");
    assert_eq!(d.module_path, Path::new("/apps/./hello.wasm"));
    assert_eq!(d.replicas, 2);
    assert_eq!(d.args, ["--interval", "1s"]);
    assert_eq!(d.env["GREETING"], "hi");
    assert_eq!(d.memory_bytes, 16 << 20);
    assert_eq!(d.cpu_millis, Some(250));
    assert_eq!(d.max_run_ms, Some(90_000));
    assert_eq!(d.restart_policy, RestartPolicyName::Always);
}

#[test]
fn unknown_field_names_field_and_line() {
    let bad = HELLO.replace("replicas: 2", "replica: 2");
    let err = parse(&bad, Path::new(".")).unwrap_err();
    assert!(err.contains("unknown field `replica`"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn unknown_kind_and_version_are_named() {
    let err = parse(
        &HELLO.replace("kind: Deployment", "kind: Pod"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("unknown kind \"Pod\""), "{err}");
    let err = parse(
        &HELLO.replace("wasmfleet.dev/v1", "apps/v1"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("apiVersion"), "{err}");
}

#[test]
fn malformed_yaml_reports_a_line() {
    let err = parse("apiVersion: [unclosed\nkind: x", Path::new(".")).unwrap_err();
    assert!(err.contains("line"), "{err}");
}

#[test]
fn bad_quantity_and_name_are_named() {
    let err = parse(&HELLO.replace("16Mi", "16MB"), Path::new(".")).unwrap_err();
    assert!(err.starts_with("spec.resources.memory"), "{err}");
    let err = parse(&HELLO.replace("250m", "lots"), Path::new(".")).unwrap_err();
    assert!(err.starts_with("spec.resources.cpu: \"lots\""), "{err}");
    let err = parse(&HELLO.replace("90s", "0s"), Path::new(".")).unwrap_err();
    assert!(err.starts_with("spec.resources.maxRunTime"), "{err}");
    let err = parse(&HELLO.replace("90s", "soon"), Path::new(".")).unwrap_err();
    assert!(err.starts_with("spec.resources.maxRunTime"), "{err}");
    let err = parse(
        &HELLO.replace("name: hello", "name: Hello_World"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.starts_with("metadata.name"), "{err}");
}

#[test]
fn config_and_capabilities() {
    let text = "\
apiVersion: wasmfleet.dev/v1
kind: Deployment
metadata: {name: alarm, namespace: plant-1}
spec:
  module: ./alarm.wasm
  config: {threshold: 25, interval: 1s, on: true}
  capabilities:
    gpio: [17]
    subscribe: [\"sensors/+/temp\"]
    kv: 4Ki
";
    let d = &parse(text, Path::new(".")).unwrap()[0];
    assert_eq!(d.namespace, "plant-1");
    assert_eq!(d.config["threshold"], "25");
    assert_eq!(d.config["interval"], "1s");
    assert_eq!(d.config["on"], "true");
    assert_eq!(d.capabilities.gpio, [17]);
    assert_eq!(d.capabilities.kv_bytes, 4096);
    let err = parse(&text.replace("gpio: [17]", "gpios: [17]"), Path::new(".")).unwrap_err();
    assert!(err.contains("unknown field `gpios`"), "{err}");
    let err = parse(&text.replace("4Ki", "lots"), Path::new(".")).unwrap_err();
    assert!(err.starts_with("spec.capabilities.kv"), "{err}");
    let err = parse(
        &text.replace("sensors/+/temp", "sensors/#/temp"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.starts_with("spec.capabilities.subscribe"), "{err}");
    assert_eq!(
        parse(HELLO, Path::new(".")).unwrap()[0].namespace,
        "default"
    );
}

const DAEMON: &str = "\
apiVersion: wasmfleet.dev/v1
kind: Deployment
metadata: {name: probe}
spec:
  module: ./probe.wasm
  placement: every-node
  nodeSelector: {site: lab}
  affinity:
    nodeAffinity:
      matchExpressions:
        - {key: wasmfleet.dev/arch, operator: In, values: [aarch64, x86_64]}
        - {key: maintenance, operator: DoesNotExist}
";

#[test]
fn every_node_placement_and_affinity() {
    let d = &parse(DAEMON, Path::new(".")).unwrap()[0];
    assert_eq!(d.placement, PlacementPolicy::EveryNode);
    assert_eq!(d.replicas, 0, "every-node counts no replicas");
    assert_eq!(d.node_selector["site"], "lab");
    assert_eq!(
        d.node_affinity,
        [
            MatchExpression {
                key: "wasmfleet.dev/arch".into(),
                operator: Operator::In,
                values: vec!["aarch64".into(), "x86_64".into()],
            },
            MatchExpression {
                key: "maintenance".into(),
                operator: Operator::DoesNotExist,
                values: vec![],
            },
        ]
    );
    // The default is `replicas`, and scalars are text as in nodeSelector.
    let plain = HELLO.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  affinity: {nodeAffinity: {matchExpressions: \
         [{key: rack, operator: NotIn, values: [7]}]}}\n",
    );
    let d = &parse(&plain, Path::new(".")).unwrap()[0];
    assert_eq!(d.placement, PlacementPolicy::Replicas);
    assert_eq!(d.replicas, 2);
    assert_eq!(d.node_affinity[0].values, ["7"]);
}

#[test]
fn the_kubernetes_form_of_node_affinity_is_accepted_with_one_term() {
    let k8s = "\
apiVersion: wasmfleet.dev/v1
kind: Deployment
metadata: {name: probe}
spec:
  module: ./probe.wasm
  affinity:
    nodeAffinity:
      matchExpressions: [{key: a, operator: Exists}]
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: b, operator: In, values: [x]}
";
    let d = &parse(k8s, Path::new(".")).unwrap()[0];
    let keys: Vec<_> = d.node_affinity.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "both forms, ANDed in order");
    let two = format!("{k8s}          - matchExpressions: [{{key: c, operator: Exists}}]\n");
    let err = parse(&two, Path::new(".")).unwrap_err();
    assert!(
        err.starts_with(
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution\
             .nodeSelectorTerms: exactly one term"
        ),
        "{err}"
    );
    let err = parse(&k8s.replace("values: [x]", "values: []"), Path::new(".")).unwrap_err();
    assert!(
        err.starts_with(
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution\
             .nodeSelectorTerms[0].matchExpressions[0]: operator In needs at least one value"
        ),
        "{err}"
    );
    let preferred = k8s.replace(
        "requiredDuringSchedulingIgnoredDuringExecution",
        "preferredDuringSchedulingIgnoredDuringExecution",
    );
    let err = parse(&preferred, Path::new(".")).unwrap_err();
    assert!(
        err.contains("unknown field `preferredDuringSchedulingIgnoredDuringExecution`")
            && err.contains("line"),
        "{err}"
    );
}

#[test]
fn bad_placement_and_affinity_are_named() {
    let err = parse(
        &DAEMON.replace(
            "  placement: every-node\n",
            "  placement: every-node\n  replicas: 3\n",
        ),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        err.starts_with("spec.replicas: not allowed with spec.placement: every-node"),
        "{err}"
    );
    let err = parse(&DAEMON.replace("every-node", "everywhere"), Path::new(".")).unwrap_err();
    assert!(
        err.contains("unknown variant `everywhere`") && err.contains("line 6"),
        "{err}"
    );
    let err = parse(
        &DAEMON.replace("operator: In", "operator: Gt"),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        err.contains("unknown variant `Gt`") && err.contains("line"),
        "{err}"
    );
    let err = parse(
        &DAEMON.replace("values: [aarch64, x86_64]", "values: []"),
        Path::new("."),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "spec.affinity.nodeAffinity.matchExpressions[0]: operator In needs at least one value"
    );
    let err = parse(
        &DAEMON.replace(
            "operator: DoesNotExist}",
            "operator: DoesNotExist, values: [x]}",
        ),
        Path::new("."),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "spec.affinity.nodeAffinity.matchExpressions[1]: operator DoesNotExist takes no values"
    );
    for (from, to, field) in [
        ("key: maintenance", "name: maintenance", "name"),
        ("nodeAffinity:", "podAffinity:", "podAffinity"),
        ("values: [aarch64", "value: [aarch64", "value"),
    ] {
        let err = parse(&DAEMON.replace(from, to), Path::new(".")).unwrap_err();
        assert!(
            err.contains(&format!("unknown field `{field}`")) && err.contains("line"),
            "{err}"
        );
    }
}

#[test]
fn multiple_documents_and_defaults() {
    let two = format!(
        "{HELLO}---\n{}",
        HELLO
            .replace("name: hello", "name: other")
            .replace("  replicas: 2\n", "")
    );
    let d = parse(&two, Path::new(".")).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].replicas, 1);
}
