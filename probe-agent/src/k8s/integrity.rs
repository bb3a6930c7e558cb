//! Whether evidence integrity between nodes is enforced: the `ValidatingAdmissionPolicy` of
//! `deploy/kustomize/components/evidence-integrity`, which lets an agent write only the
//! `NodeTokenEvidence` named after its own node. The planner states it in every plan.

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use kube::{Api, Client};
use serde::Serialize;

/// The policy's (and its binding's) name.
pub const POLICY_NAME: &str = "tokenprobe-evidence-own-node";

/// What the plan says about evidence integrity between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Integrity {
    /// `Some(true)`: agents can write only their own node's evidence; `Some(false)`: any agent
    /// can write any node's; `None`: not known (inputs from files, or not readable).
    pub enforced: Option<bool>,
    pub detail: String,
}

impl Default for Integrity {
    fn default() -> Self {
        Self {
            enforced: None,
            detail: "unknown: the inputs are files, the cluster's admission policies were not read".into(),
        }
    }
}

impl Integrity {
    fn not_enforced(why: &str) -> Self {
        Self {
            enforced: Some(false),
            detail: format!(
                "not enforced: {why}; any agent can write any node's evidence (a node's own evidence is still the only one that vouches for its pods)"
            ),
        }
    }
}

/// Reads the policy and its binding.
pub async fn check(client: &Client) -> Integrity {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let unknown = |e: &kube::Error| Integrity {
        enforced: None,
        detail: format!("unknown: cannot read ValidatingAdmissionPolicies ({e})"),
    };
    // A 404 is both "no such policy" and "no such API" (Kubernetes before 1.30).
    let policy = match policies.get_opt(POLICY_NAME).await {
        Ok(p) => p,
        Err(e) => return unknown(&e),
    };
    let Some(policy) = policy else {
        return Integrity::not_enforced(&format!(
            "no ValidatingAdmissionPolicy {POLICY_NAME} (deploy/kustomize/components/evidence-integrity; Kubernetes >= 1.30)"
        ));
    };
    let binding = match bindings.get_opt(POLICY_NAME).await {
        Ok(b) => b,
        Err(e) => return unknown(&e),
    };
    let denies = binding.as_ref().is_some_and(|b| {
        b.spec.as_ref().is_some_and(|s| {
            s.policy_name.as_deref() == Some(POLICY_NAME)
                && s.validation_actions.as_ref().is_some_and(|a| a.iter().any(|x| x == "Deny"))
        })
    });
    if !denies {
        return Integrity::not_enforced(&format!("the policy {POLICY_NAME} has no binding that denies"));
    }
    let fails_closed = policy.spec.as_ref().and_then(|s| s.failure_policy.as_deref()) != Some("Ignore");
    if !fails_closed {
        return Integrity::not_enforced(&format!("the policy {POLICY_NAME} is set to failurePolicy Ignore"));
    }
    Integrity { enforced: Some(true), detail: format!("enforced by the ValidatingAdmissionPolicy {POLICY_NAME}") }
}

#[cfg(test)]
mod tests {
    //! The policy's CEL, evaluated on sample admission requests (with cel-interpreter, not an API
    //! server: the test API server is 1.20, without `ValidatingAdmissionPolicy`).

    use cel_interpreter::{Context, Program, Value};
    use serde_json::{Value as Json, json};

    const POLICY: &str = include_str!("../../../deploy/kustomize/components/evidence-integrity/policy.yaml");

    fn policy() -> Json {
        let doc = serde_yaml::Deserializer::from_str(POLICY).next().expect("a document");
        serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("YAML")).expect("JSON")
    }

    fn eval(expression: &str, request: &Json, object: &Json) -> bool {
        let program = Program::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e:?}"));
        let mut context = Context::default();
        context.add_variable("request", request.clone()).expect("request");
        context.add_variable("object", object.clone()).expect("object");
        match program.execute(&context) {
            Ok(Value::Bool(b)) => b,
            other => panic!("{expression}: {other:?}"),
        }
    }

    /// Whether the API server would admit it: the policy applies when every match condition
    /// holds, and then every validation must hold.
    fn admitted(request: &Json, object: &Json) -> bool {
        let spec = &policy()["spec"];
        let exprs = |key: &str| -> Vec<String> {
            spec[key]
                .as_array()
                .expect(key)
                .iter()
                .map(|c| c["expression"].as_str().expect("expression").to_owned())
                .collect()
        };
        if !exprs("matchConditions").iter().all(|e| eval(e, request, object)) {
            return true;
        }
        exprs("validations").iter().all(|e| eval(e, request, object))
    }

    fn request(user: &str, node: Option<&str>, name: &str, operation: &str) -> Json {
        let extra = node.map_or_else(|| json!({}), |n| json!({"authentication.kubernetes.io/node-name": [n]}));
        json!({"name": name, "operation": operation, "userInfo": {"username": user, "extra": extra}})
    }

    fn evidence(name: &str, status_node: Option<&str>) -> Json {
        let mut o = json!({"metadata": {"name": name}, "spec": {"nodeName": name}});
        if let Some(n) = status_node {
            o["status"] = json!({"node": n, "containers": []});
        }
        o
    }

    const AGENT: &str = "system:serviceaccount:tokenprobe:tokenprobe-agent";

    #[test]
    fn an_agent_writes_only_its_own_nodes_evidence() {
        let own = request(AGENT, Some("node-a"), "node-a", "UPDATE");
        assert!(admitted(&own, &evidence("node-a", Some("node-a"))), "its own node");
        assert!(
            admitted(&request(AGENT, Some("node-a"), "node-a", "CREATE"), &evidence("node-a", None)),
            "create, no status yet"
        );
        let other = request(AGENT, Some("node-a"), "node-b", "UPDATE");
        assert!(!admitted(&other, &evidence("node-b", Some("node-b"))), "another node's object");
        assert!(!admitted(&own, &evidence("node-a", Some("node-b"))), "its object claiming another node");
        assert!(
            !admitted(&request(AGENT, None, "node-a", "UPDATE"), &evidence("node-a", Some("node-a"))),
            "a token without a node"
        );
        assert!(!admitted(&request(AGENT, Some("node-a"), "node-a", "DELETE"), &Json::Null), "delete");
        // The agents' ServiceAccount in another namespace is held to the same rule.
        let elsewhere = request("system:serviceaccount:security:tokenprobe-agent", Some("node-a"), "node-b", "UPDATE");
        assert!(!admitted(&elsewhere, &evidence("node-b", Some("node-b"))));
    }

    #[test]
    fn other_users_are_not_matched() {
        for user in [
            "kubernetes-admin",
            "system:serviceaccount:tokenprobe:tokenprobe-planner",
            "system:serviceaccount:x:tokenprobe-agent-2",
        ] {
            assert!(admitted(&request(user, None, "node-b", "UPDATE"), &evidence("node-b", Some("node-c"))), "{user}");
        }
    }

    #[test]
    fn the_policy_matches_its_schema_and_binding() {
        use k8s_openapi::api::admissionregistration::v1::{
            ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        };
        let docs: Vec<Json> = serde_yaml::Deserializer::from_str(POLICY)
            .map(|d| {
                serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(d).expect("YAML"))
                    .expect("JSON")
            })
            .collect();
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(docs[0].clone()).expect("policy");
        assert_eq!(serde_json::to_value(&policy).expect("JSON"), docs[0], "unknown or misplaced fields");
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(docs[1].clone()).expect("binding");
        assert_eq!(serde_json::to_value(&binding).expect("JSON"), docs[1]);
        assert_eq!(policy.metadata.name.as_deref(), Some(super::POLICY_NAME));
        assert_eq!(binding.spec.and_then(|s| s.policy_name).as_deref(), Some(super::POLICY_NAME));
    }
}
