//! The second witness: the API server's audit events, joined to pods.
//!
//! A pod-bound service-account token names its pod in the audit event's
//! `user.extra["authentication.kubernetes.io/pod-uid"]` (and `pod-name`; newer servers add
//! `node-name` and `credential-id`). Each request is one `auditID`; the log backend writes an
//! event per stage, so only `ResponseComplete` (and `Panic`) events are counted, each `auditID`
//! once. Requests by a ServiceAccount without a pod claim (legacy Secret tokens, `TokenRequest`
//! tokens handed elsewhere) are kept per ServiceAccount, flagged as not attributable to a pod.
//!
//! Audit evidence proves use, never non-use: a token shown to anything but the API server
//! (Vault, any `TokenReview` user) leaves no request attributed to its pod, and the audit policy
//! may leave requests out.
//!
//! Reads the log backend's JSON lines, the webhook backend's `EventList` batches saved to files,
//! either gzip-compressed or not.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    io::Read,
    path::Path,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::evidence::{earliest, latest};

const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const SA_PREFIX: &str = "system:serviceaccount:";
/// The annotation the API server adds when it accepts a token past its expiry
/// (`--service-account-extend-token-expiration`).
const STALE_TOKEN: &str = "authentication.k8s.io/stale-token";

/// What requests with one token (or one kind of token) added up to: the part a pod's and a
/// ServiceAccount's totals share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Distinct requests (audit IDs) that completed.
    pub requests: u64,
    pub verbs: BTreeSet<String>,
    /// `resource` or `resource/subresource`, with the API group when there is one
    /// (`deployments.apps`); non-resource requests by path.
    pub resources: BTreeSet<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<String>")]
    pub first: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<String>")]
    pub last: Option<OffsetDateTime>,
    /// Source addresses the server saw.
    #[serde(default)]
    pub source_ips: BTreeSet<String>,
}

impl Tally {
    fn add(&mut self, event: &Event, resource: String, at: Option<OffsetDateTime>) {
        self.requests += 1;
        self.verbs.insert(event.verb.clone());
        self.resources.insert(resource);
        self.first = earliest(self.first, at);
        self.last = latest(self.last, at);
        self.source_ips.extend(event.source_ips.iter().cloned());
    }

    fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.verbs.extend(other.verbs.iter().cloned());
        self.resources.extend(other.resources.iter().cloned());
        self.first = earliest(self.first, other.first);
        self.last = latest(self.last, other.last);
        self.source_ips.extend(other.source_ips.iter().cloned());
    }
}

/// Requests made with one pod's token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRequests {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub service_account: String,
    /// The node the token was bound to, where the server says (newer servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
    /// Of which answered 401 or 403.
    #[serde(default)]
    pub denied: u64,
    /// Of which the server accepted only because it extends expired tokens (stale token).
    #[serde(default)]
    pub stale_token: u64,
}

/// Requests by a ServiceAccount whose token names no pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRequests {
    pub namespace: String,
    pub service_account: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A request the server could not authenticate (401), or one it refused to anonymous (403).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unauthenticated {
    pub code: u16,
    pub source_ips: Vec<String>,
    pub verb: String,
    pub resource: String,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub at: Option<OffsetDateTime>,
}

/// What the audit files say about service-account tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvidence {
    /// Per pod UID.
    pub pods: BTreeMap<String, PodRequests>,
    /// Per `namespace/name`: requests with no pod claim.
    pub service_accounts: BTreeMap<String, ServiceAccountRequests>,
    /// 401s and anonymous 403s (for `verify`, matched to pods by source IP).
    pub unauthenticated: Vec<Unauthenticated>,
    /// Completed requests read (all users), and events skipped for their stage.
    pub requests_read: u64,
    pub other_stages: u64,
    /// The span of the events read.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last: Option<OffsetDateTime>,
    /// The files read.
    pub files: Vec<String>,
    /// Notes on what was read (a cut-short last event, ...).
    #[serde(default)]
    pub notes: Vec<String>,
    /// What the audit policy leaves out, for service-account requests; `None`: unknown.
    #[serde(default)]
    pub policy: Option<PolicyCoverage>,
    /// Audit IDs already counted (not serialized: dedup within one reading).
    #[serde(skip)]
    seen: HashSet<String>,
}

/// What an audit policy hides of service-account requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCoverage {
    /// One line per rule that drops (level `None`) or cannot see service-account requests;
    /// empty: the policy records every completed service-account request.
    pub hides: Vec<String>,
    /// The policy records no service-account request at all.
    pub blind: bool,
}

/// A bad audit file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not audit events (JSON lines of audit.k8s.io Events, or EventList batches): {detail}")]
    Format { file: String, detail: String },
    #[error("{file}: not an audit policy: {detail}")]
    Policy { file: String, detail: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    #[serde(default)]
    username: String,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    api_group: String,
}

#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    code: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID", default)]
    audit_id: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(rename = "requestURI", default)]
    request_uri: String,
    #[serde(default)]
    user: User,
    #[serde(rename = "sourceIPs", default)]
    source_ips: Vec<String>,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<Status>,
    #[serde(default)]
    stage_timestamp: Option<String>,
    #[serde(default)]
    request_received_timestamp: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn timestamp(t: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t?, &time::format_description::well_known::Rfc3339).ok()
}

impl Event {
    fn resource(&self) -> String {
        match &self.object_ref {
            Some(o) if !o.resource.is_empty() => {
                let sub = if o.subresource.is_empty() { String::new() } else { format!("/{}", o.subresource) };
                let group = if o.api_group.is_empty() { String::new() } else { format!(".{}", o.api_group) };
                format!("{}{group}{sub}", o.resource)
            }
            // Non-resource requests (`/version`, `/healthz`): the path without its query.
            _ => self.request_uri.split('?').next().unwrap_or_default().to_owned(),
        }
    }

    fn claim(&self, key: &str) -> Option<&str> {
        self.user.extra.get(key).and_then(|v| v.first()).map(String::as_str).filter(|s| !s.is_empty())
    }
}

impl AuditEvidence {
    /// Reads one file (gzip or not; JSON lines or `EventList` batches) into this evidence.
    ///
    /// # Errors
    /// The file cannot be read, or holds something other than audit events. A last event cut
    /// short (a log being written) is skipped with a note, not an error.
    pub fn read_file(&mut self, path: &Path) -> Result<(), AuditError> {
        let file = path.display().to_string();
        let io = |source| AuditError::Io { file: file.clone(), source };
        let raw = std::fs::read(path).map_err(io)?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(io)?;
            out
        } else {
            raw
        };
        self.read_bytes(&file, &text)
    }

    /// Reads events from `bytes` (see [`AuditEvidence::read_file`]); `file` names them in errors.
    ///
    /// # Errors
    /// See [`AuditEvidence::read_file`].
    pub fn read_bytes(&mut self, file: &str, bytes: &[u8]) -> Result<(), AuditError> {
        let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
        let mut values = 0_u64;
        loop {
            let offset = stream.byte_offset();
            let value = match stream.next() {
                None => break,
                Some(Ok(v)) => v,
                Some(Err(e)) if e.is_eof() && values > 0 => {
                    self.notes.push(format!("{file}: the last event (at byte {offset}) is cut short; skipped"));
                    break;
                }
                Some(Err(e)) => {
                    return Err(AuditError::Format { file: file.to_owned(), detail: format!("at byte {offset}: {e}") });
                }
            };
            values += 1;
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
            match kind {
                "EventList" => {
                    let items = value.get("items").and_then(|i| i.as_array()).ok_or_else(|| AuditError::Format {
                        file: file.to_owned(),
                        detail: format!("the EventList at byte {offset} has no items"),
                    })?;
                    for item in items {
                        self.event(file, offset, item)?;
                    }
                }
                "Event" | "" => self.event(file, offset, &value)?,
                other => {
                    return Err(AuditError::Format {
                        file: file.to_owned(),
                        detail: format!("at byte {offset}: an object of kind {other:?}"),
                    });
                }
            }
        }
        if values == 0 {
            return Err(AuditError::Format { file: file.to_owned(), detail: "no events".into() });
        }
        self.files.push(file.to_owned());
        Ok(())
    }

    fn event(&mut self, file: &str, offset: usize, value: &serde_json::Value) -> Result<(), AuditError> {
        let event = Event::deserialize(value).map_err(|e| AuditError::Format {
            file: file.to_owned(),
            detail: format!("the event at byte {offset}: {e}"),
        })?;
        if event.audit_id.is_empty() || event.stage.is_empty() {
            return Err(AuditError::Format {
                file: file.to_owned(),
                detail: format!("the event at byte {offset} has no auditID or stage"),
            });
        }
        if event.stage != "ResponseComplete" && event.stage != "Panic" {
            self.other_stages += 1;
            return Ok(());
        }
        if !self.seen.insert(event.audit_id.clone()) {
            return Ok(()); // the same request from another file or batch
        }
        self.requests_read += 1;
        let at = timestamp(event.stage_timestamp.as_deref()).or(timestamp(event.request_received_timestamp.as_deref()));
        self.first = earliest(self.first, at);
        self.last = latest(self.last, at);
        let code = event.response_status.as_ref().map_or(0, |s| s.code);
        let username = event.user.username.as_str();
        if (code == 401) || (code == 403 && (username.is_empty() || username == "system:anonymous")) {
            self.unauthenticated.push(Unauthenticated {
                code,
                source_ips: event.source_ips.clone(),
                verb: event.verb.clone(),
                resource: event.resource(),
                at,
            });
            return Ok(());
        }
        let Some((namespace, service_account)) = username.strip_prefix(SA_PREFIX).and_then(|rest| rest.split_once(':'))
        else {
            return Ok(());
        };
        let resource = event.resource();
        if let Some(uid) = event.claim(POD_UID) {
            let p = self.pods.entry(uid.to_owned()).or_insert_with(|| PodRequests {
                namespace: namespace.to_owned(),
                pod: event.claim(POD_NAME).unwrap_or_default().to_owned(),
                pod_uid: uid.to_owned(),
                service_account: service_account.to_owned(),
                ..PodRequests::default()
            });
            p.tally.add(&event, resource, at);
            p.denied += u64::from(code == 401 || code == 403);
            p.stale_token += u64::from(event.annotations.contains_key(STALE_TOKEN));
            if p.node.is_none() {
                p.node = event.claim(NODE_NAME).map(str::to_owned);
            }
        } else {
            let s = self.service_accounts.entry(format!("{namespace}/{service_account}")).or_insert_with(|| {
                ServiceAccountRequests {
                    namespace: namespace.to_owned(),
                    service_account: service_account.to_owned(),
                    ..ServiceAccountRequests::default()
                }
            });
            s.tally.add(&event, resource, at);
        }
        Ok(())
    }

    /// Reads every file; the policy, when given, says what the files cannot show.
    ///
    /// # Errors
    /// The first bad file.
    pub fn read(files: &[std::path::PathBuf], policy: Option<&Path>) -> Result<Self, AuditError> {
        let mut evidence = Self::default();
        for f in files {
            evidence.read_file(f)?;
        }
        if let Some(p) = policy {
            evidence.policy = Some(read_policy(p)?);
        }
        Ok(evidence)
    }

    /// Adds `other`'s per-pod and per-ServiceAccount totals to these (counts add up, sets join,
    /// the span widens). Requests both saw are counted twice: totals merged from separate
    /// readings are at least, never exactly, the requests made.
    pub fn merge_totals(&mut self, other: &Self) {
        for (uid, o) in &other.pods {
            let p = self.pods.entry(uid.clone()).or_insert_with(|| PodRequests {
                tally: Tally::default(),
                denied: 0,
                stale_token: 0,
                ..o.clone()
            });
            p.tally.merge(&o.tally);
            p.denied += o.denied;
            p.stale_token += o.stale_token;
            p.node = p.node.take().or_else(|| o.node.clone());
        }
        for (key, o) in &other.service_accounts {
            let s = self
                .service_accounts
                .entry(key.clone())
                .or_insert_with(|| ServiceAccountRequests { tally: Tally::default(), ..o.clone() });
            s.tally.merge(&o.tally);
        }
        self.requests_read += other.requests_read;
        self.first = earliest(self.first, other.first);
        self.last = latest(self.last, other.last);
    }

    /// Adds everything `other` read: its totals ([`AuditEvidence::merge_totals`]), its files,
    /// notes and unauthenticated requests, and its policy when it has one.
    pub fn absorb(&mut self, other: Self) {
        self.merge_totals(&other);
        self.files.extend(other.files);
        self.notes.extend(other.notes);
        self.unauthenticated.extend(other.unauthenticated);
        if other.policy.is_some() {
            self.policy = other.policy;
        }
    }

    /// Drops totals last seen before `cutoff`, then the oldest beyond `max_pods` pods; returns
    /// how many went. Dropping audit totals is always sound: they only ever prove use.
    pub fn prune(&mut self, cutoff: OffsetDateTime, max_pods: usize) -> u64 {
        let before = self.pods.len() + self.service_accounts.len();
        self.pods.retain(|_, p| p.tally.last.is_none_or(|t| t >= cutoff));
        self.service_accounts.retain(|_, s| s.tally.last.is_none_or(|t| t >= cutoff));
        if self.pods.len() > max_pods {
            let mut by_age: Vec<(Option<OffsetDateTime>, String)> =
                self.pods.iter().map(|(uid, p)| (p.tally.last, uid.clone())).collect();
            by_age.sort();
            for (_, uid) in by_age.into_iter().take(self.pods.len() - max_pods) {
                self.pods.remove(&uid);
            }
        }
        (before - self.pods.len() - self.service_accounts.len()) as u64
    }

    /// One line on what the policy hides: "policy unknown" without one.
    #[must_use]
    pub fn policy_line(&self) -> String {
        match &self.policy {
            None => "audit policy unknown: requests it leaves out cannot be told from requests not made".into(),
            Some(p) if p.blind => {
                format!("the audit policy records no service-account request ({})", p.hides.join("; "))
            }
            Some(p) if p.hides.is_empty() => "the audit policy records every completed service-account request".into(),
            Some(p) => format!("the audit policy leaves out: {}", p.hides.join("; ")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    level: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    non_resource_u_r_ls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
}

/// Reads an `audit.k8s.io/v1` Policy and says what it hides of service-account requests.
///
/// # Errors
/// The file cannot be read or is not a Policy.
pub fn read_policy(path: &Path) -> Result<PolicyCoverage, AuditError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io { file: file.clone(), source })?;
    policy_coverage(&file, &text)
}

/// What a policy (YAML or JSON text) hides of service-account requests: rules are matched in
/// order and the first match decides, so a rule that cannot match a service account is skipped,
/// a `None` rule for service accounts hides what it selects, and the first rule that matches
/// every service-account request ends the list.
///
/// # Errors
/// Not a Policy.
pub fn policy_coverage(file: &str, text: &str) -> Result<PolicyCoverage, AuditError> {
    let policy: Policy =
        serde_yaml::from_str(text).map_err(|e| AuditError::Policy { file: file.to_owned(), detail: e.to_string() })?;
    if policy.kind != "Policy" {
        return Err(AuditError::Policy { file: file.to_owned(), detail: format!("kind {:?}", policy.kind) });
    }
    let mut out = PolicyCoverage::default();
    let omits = |stages: &[String]| stages.iter().any(|s| s == "ResponseComplete");
    if omits(&policy.omit_stages) {
        out.hides.push("every ResponseComplete event (omitStages)".into());
        out.blind = true;
        return Ok(out);
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let for_sa = (rule.users.is_empty()
            || rule.users.iter().any(|u| u.starts_with(SA_PREFIX) || u == "system:serviceaccount:*"))
            && (rule.user_groups.is_empty()
                || rule.user_groups.iter().any(|g| {
                    g == "system:serviceaccounts"
                        || g.starts_with("system:serviceaccounts:")
                        || g == "system:authenticated"
                }));
        if !for_sa {
            continue;
        }
        let all_of_them = rule.users.is_empty()
            && rule.verbs.is_empty()
            && rule.resources.is_empty()
            && rule.namespaces.is_empty()
            && rule.non_resource_u_r_ls.is_empty()
            && (rule.user_groups.is_empty()
                || rule.user_groups.iter().any(|g| g == "system:serviceaccounts" || g == "system:authenticated"));
        let hidden = rule.level == "None" || omits(&rule.omit_stages);
        if hidden {
            out.hides.push(format!("rule {}: {}", i + 1, describe(rule)));
        }
        if all_of_them {
            out.blind = hidden;
            return Ok(out);
        }
    }
    // No rule matched: the server does not record the rest.
    out.hides.push("requests no rule matches (not recorded)".into());
    Ok(out)
}

fn describe(rule: &Rule) -> String {
    let mut parts = Vec::new();
    let list = |v: &[String]| v.join(",");
    if !rule.users.is_empty() {
        parts.push(format!("users {}", list(&rule.users)));
    }
    if !rule.user_groups.is_empty() {
        parts.push(format!("groups {}", list(&rule.user_groups)));
    }
    if !rule.verbs.is_empty() {
        parts.push(format!("verbs {}", list(&rule.verbs)));
    }
    if !rule.resources.is_empty() {
        let r: Vec<String> = rule
            .resources
            .iter()
            .map(|g| {
                let rs = if g.resources.is_empty() { "*".to_owned() } else { g.resources.join(",") };
                if g.group.is_empty() { rs } else { format!("{rs} ({})", g.group) }
            })
            .collect();
        parts.push(format!("resources {}", r.join("; ")));
    }
    if !rule.namespaces.is_empty() {
        parts.push(format!("namespaces {}", list(&rule.namespaces)));
    }
    if !rule.non_resource_u_r_ls.is_empty() {
        parts.push(format!("paths {}", list(&rule.non_resource_u_r_ls)));
    }
    if parts.is_empty() { "every request".into() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, stage: &str, user: &str, pod: Option<(&str, &str)>, code: u16) -> String {
        let extra = pod.map_or_else(
            || "{}".to_owned(),
            |(name, uid)| format!(r#"{{"{POD_NAME}":["{name}"],"{POD_UID}":["{uid}"]}}"#),
        );
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"{stage}","requestURI":"/api/v1/namespaces/a/pods?limit=5","verb":"list","user":{{"username":"{user}","extra":{extra}}},"sourceIPs":["10.0.0.7"],"objectRef":{{"resource":"pods","namespace":"a","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.{id}Z"}}"#
        )
    }

    #[test]
    fn counts_completed_requests_once_per_audit_id_and_joins_pods() {
        let sa = "system:serviceaccount:a:reader";
        let lines = [
            event("000001", "RequestReceived", sa, Some(("web-1", "u1")), 200),
            event("000001", "ResponseComplete", sa, Some(("web-1", "u1")), 200),
            event("000002", "ResponseComplete", sa, Some(("web-2", "u2")), 403),
            event("000003", "ResponseComplete", sa, None, 200),
            event("000004", "ResponseComplete", "alice", None, 200),
            event("000005", "ResponseComplete", "system:anonymous", None, 401),
        ]
        .join("\n");
        let mut ev = AuditEvidence::default();
        ev.read_bytes("audit.log", lines.as_bytes()).expect("read");
        // The same request again (another file, a webhook batch) counts once.
        ev.read_bytes("again.log", event("000001", "ResponseComplete", sa, Some(("web-1", "u1")), 200).as_bytes())
            .expect("read");
        assert_eq!(ev.requests_read, 5);
        assert_eq!(ev.other_stages, 1);
        assert_eq!(ev.pods.len(), 2);
        let p = &ev.pods["u1"];
        assert_eq!((p.pod.as_str(), p.namespace.as_str(), p.service_account.as_str()), ("web-1", "a", "reader"));
        assert_eq!(p.tally.requests, 1);
        assert_eq!(p.tally.resources.iter().collect::<Vec<_>>(), ["pods"]);
        assert_eq!(ev.pods["u2"].denied, 1);
        assert_eq!(ev.service_accounts["a/reader"].tally.requests, 1, "no pod claim: the ServiceAccount's");
        assert_eq!(ev.unauthenticated.len(), 1);
        assert_eq!(ev.files, ["audit.log", "again.log"]);
    }

    #[test]
    fn reads_event_lists_gzip_and_a_cut_short_last_line() {
        let sa = "system:serviceaccount:b:x";
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{}]}}"#,
            event("000010", "ResponseComplete", sa, Some(("p", "u9")), 200),
            event("000011", "ResponseComplete", sa, Some(("p", "u9")), 200)
        );
        let dir = std::env::temp_dir().join(format!("tokenprobe-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let gz = dir.join("batch.json.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, list.as_bytes()).expect("gzip");
        std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        let mut ev = AuditEvidence::default();
        ev.read_file(&gz).expect("gzip EventList");
        assert_eq!(ev.pods["u9"].tally.requests, 2);
        let cut = format!("{}\n{}", event("000012", "ResponseComplete", sa, Some(("p", "u9")), 200), "{\"kind\":\"Ev");
        ev.read_bytes("live.log", cut.as_bytes()).expect("cut short at the end is fine");
        assert_eq!(ev.pods["u9"].tally.requests, 3);
        assert!(ev.notes[0].contains("cut short"), "{:?}", ev.notes);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let mut ev = AuditEvidence::default();
        for (text, needle) in [
            ("", "no events"),
            ("not json", "at byte 0"),
            (r#"{"kind":"Pod"}"#, "kind \"Pod\""),
            (r#"{"kind":"Event","stage":"ResponseComplete"}"#, "no auditID"),
            (r#"{"kind":"EventList"}"#, "no items"),
            ("{\"kind\":\"Event\",\"auditID\":\"x\",\"stage\":\"ResponseComplete\",\"user\":7}", "the event at byte 0"),
        ] {
            let err = ev.read_bytes("f.log", text.as_bytes()).expect_err(text).to_string();
            assert!(err.contains("f.log") && err.contains(needle), "{text}: {err}");
        }
        let missing = ev.read_file(Path::new("/nonexistent/audit.log")).expect_err("missing").to_string();
        assert!(missing.contains("/nonexistent/audit.log"), "{missing}");
    }

    #[test]
    fn policy_coverage_says_what_is_hidden() {
        let sa_metadata = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
            - level: None\n  userGroups: [system:nodes]\n\
            - level: None\n  userGroups: [system:serviceaccounts]\n  verbs: [watch]\n\
            - level: Metadata\n  userGroups: [system:serviceaccounts]\n\
            - level: None\n";
        let c = policy_coverage("p.yaml", sa_metadata).expect("policy");
        assert!(!c.blind);
        assert_eq!(c.hides, ["rule 2: groups system:serviceaccounts, verbs watch"]);
        let none = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n";
        assert!(policy_coverage("p.yaml", none).expect("policy").blind);
        let omitted =
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [ResponseComplete]\nrules:\n- level: Metadata\n";
        assert!(policy_coverage("p.yaml", omitted).expect("policy").blind);
        let partial = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  namespaces: [prod]\n";
        let c = policy_coverage("p.yaml", partial).expect("policy");
        assert!(!c.blind && c.hides.iter().any(|h| h.contains("no rule matches")), "{c:?}");
        assert!(policy_coverage("p.yaml", "kind: Pod\n").is_err());
    }
}
