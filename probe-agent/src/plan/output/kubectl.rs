//! Patches and kubectl scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::plan::{Change, Plan};

/// The annotation that records why a change was made.
pub const EVIDENCE_ANNOTATION: &str = "tokenprobe.dev/evidence";

/// The strategic-merge patch of a change: the field, where the object keeps it, and the
/// evidence annotation.
#[must_use]
pub fn patch_body(change: &Change) -> Value {
    let field = json!({"automountServiceAccountToken": change.automount});
    let mut body = match change.target.kind.as_str() {
        "ServiceAccount" => field,
        "CronJob" => json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": field}}}}}),
        "Pod" => json!({"spec": field}),
        _ => json!({"spec": {"template": {"spec": field}}}),
    };
    body["metadata"] = json!({"annotations": {EVIDENCE_ANNOTATION: change.evidence}});
    body
}

fn header(i: usize, c: &Change) -> String {
    format!(
        "# {}. {} {}/{}: automountServiceAccountToken: {}\n#    why: {}\n",
        i + 1,
        c.target.kind,
        c.target.namespace,
        c.target.name,
        c.automount,
        c.reason
    )
}

/// One strategic-merge patch per object, as YAML documents with the object's identity, in
/// phase order. Objects the API cannot patch are listed as comments.
#[must_use]
pub fn patches(plan: &Plan) -> String {
    patches_of(super::in_order(plan).map(|(_, _, c)| c))
}

/// Patches for a list of changes (also `verify`'s rollbacks).
pub fn patches_of<'c>(changes: impl Iterator<Item = &'c Change>) -> String {
    let mut out = String::new();
    for (i, c) in changes.enumerate() {
        out.push_str(&header(i, c));
        if !c.patchable {
            out.push_str("#    not patchable: change its manifest and recreate it\n");
            continue;
        }
        let mut doc = patch_body(c);
        doc["apiVersion"] = json!(c.target.api_version);
        doc["kind"] = json!(c.target.kind);
        doc["metadata"]["name"] = json!(c.target.name);
        doc["metadata"]["namespace"] = json!(c.target.namespace);
        out.push_str(&serde_yaml::to_string(&doc).unwrap_or_default());
        out.push_str("---\n");
    }
    out
}

/// Single-quotes for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn commands(c: &Change, out: &mut String) {
    let object = format!("{} {}", c.target.kind.to_ascii_lowercase(), c.target.name);
    if !c.patchable {
        writeln!(
            out,
            "# {object} in {}: set automountServiceAccountToken: {} in its manifest and recreate it",
            c.target.namespace, c.automount
        )
        .expect("write to a String");
        return;
    }
    let field = patch_body(c);
    let mut patch = field.clone();
    if let Some(o) = patch.as_object_mut() {
        o.remove("metadata");
    }
    writeln!(out, "kubectl -n {} patch {object} --type strategic -p {}", c.target.namespace, quote(&patch.to_string()))
        .expect("write to a String");
    writeln!(
        out,
        "kubectl -n {} annotate {object} --overwrite {EVIDENCE_ANNOTATION}={}",
        c.target.namespace,
        quote(&c.evidence)
    )
    .expect("write to a String");
}

/// A bash script: each phase's patches (pins first), annotations and restarts; it pauses
/// between phases for `probe-agent verify`.
#[must_use]
pub fn script(plan: &Plan) -> String {
    let mut out = String::from(
        "#!/usr/bin/env bash\n# tokenprobe migration: turn off service-account token automount where nothing uses it.\n\
         # Review before running. Between phases, run `probe-agent verify`.\nset -euo pipefail\n\n\
         pause() { if [ -t 0 ]; then read -r -p \"$1 — press Enter to go on\" _; fi; }\n",
    );
    writeln!(out, "# generated {}", super::rfc3339(plan.generated_at)).expect("write to a String");
    if plan.phases.is_empty() {
        out.push_str("\necho 'nothing to change'\n");
    }
    for (n, phase) in plan.phases.iter().enumerate() {
        writeln!(out, "\n# --- phase {}: {} — {}", n + 1, phase.name, phase.description).expect("write to a String");
        writeln!(out, "echo '== phase {}: {}'", n + 1, phase.name).expect("write to a String");
        for i in &phase.changes {
            commands(&plan.changes[*i], &mut out);
        }
        for w in &phase.restarts {
            writeln!(out, "kubectl -n {} rollout restart {}", w.namespace, w.display()).expect("write to a String");
        }
        for w in &phase.restarts {
            writeln!(out, "kubectl -n {} rollout status {} --timeout=10m", w.namespace, w.display())
                .expect("write to a String");
        }
        if n + 1 < plan.phases.len() {
            writeln!(out, "pause 'phase {} done: check `probe-agent verify`'", n + 1).expect("write to a String");
        }
    }
    out
}

/// kubectl commands that apply `verify`'s rollbacks.
pub fn rollback_script<'c>(changes: impl Iterator<Item = &'c Change>) -> String {
    let mut out = String::from(
        "#!/usr/bin/env bash\n# tokenprobe rollback: restore the token where containers still reach for it.\nset -euo pipefail\n",
    );
    for c in changes {
        commands(c, &mut out);
    }
    out
}
