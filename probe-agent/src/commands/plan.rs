//! `probe-agent plan`, `audit` and `verify`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use crate::{
    cli::parse_duration,
    plan::{
        self, Inputs, Policy,
        output::{self, Format},
    },
};
use anyhow::Context as _;
use time::OffsetDateTime;

/// Where the inputs come from: files, or the cluster.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// Evidence: `probe-agent watch` or `/v1/evidence` JSON, NodeTokenEvidence objects (JSON or
    /// YAML, one, many or a List). Repeatable; exports of the same node are merged (latest
    /// entry per container wins). Without it, everything is read from the cluster.
    #[arg(long = "evidence", value_name = "FILE")]
    evidence: Vec<PathBuf>,
    /// Cluster objects, as `kubectl get pods,serviceaccounts,deployments,statefulsets,daemonsets,replicasets,jobs,cronjobs -A -o json`
    /// (or YAML). Repeatable. Needed with --evidence.
    #[arg(long = "objects", value_name = "FILE")]
    objects: Vec<PathBuf>,
    /// A kubeconfig for reading the cluster (default: in-cluster, else `$KUBECONFIG`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to read the cluster through (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// All namespaces (the default; kubectl's flag, accepted for habit).
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Only this namespace (live reading; default: all namespaces).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// The namespace the agents run in: their liveness Leases are read there (live reading).
    #[arg(long, default_value = crate::k8s::liveness::DEFAULT_NAMESPACE)]
    agent_namespace: String,
    /// API-server audit events: the log backend's JSON lines or the webhook backend's
    /// `EventList` batches saved to files, gzip-compressed or not. Repeatable. Requests made with
    /// a pod's token prove that its workload uses the token (also on nodes without an agent);
    /// their absence proves nothing.
    #[arg(long = "audit-log", value_name = "FILE")]
    audit_log: Vec<PathBuf>,
    /// The audit policy the API server runs with, to say what the audit log cannot show
    /// (without it: "policy unknown").
    #[arg(long = "audit-policy", value_name = "FILE", requires = "audit_log")]
    audit_policy: Option<PathBuf>,
    /// The planner's "now", RFC 3339 (default: the clock when reading the cluster; offline, the
    /// newest report among the inputs — an evidence's generatedAt or a Lease's renewal).
    #[arg(long, value_parser = parse_time)]
    now: Option<OffsetDateTime>,
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("invalid time {text:?}: {e} (expected RFC 3339, e.g. 2026-12-01T12:00:00Z)"))
}

/// A usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

impl Source {
    /// The inputs and the planner's "now".
    async fn load(&self, need_evidence: bool) -> anyhow::Result<(Inputs, OffsetDateTime)> {
        let inputs = self.read(need_evidence).await?;
        let now = match self.now {
            Some(now) => now,
            None if self.live() => OffsetDateTime::now_utc(),
            None => inputs.newest_report().unwrap_or_else(OffsetDateTime::now_utc),
        };
        Ok((inputs, now))
    }

    const fn live(&self) -> bool {
        self.evidence.is_empty() && self.objects.is_empty()
    }

    /// A client for the cluster `--kubeconfig`/`--context` name (else as kubectl chooses).
    async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = super::kubeconfig::client_config(self.kubeconfig.as_ref(), self.context.as_deref()).await?;
        kube::Client::try_from(config).context("cannot build a Kubernetes client")
    }

    async fn read(&self, need_evidence: bool) -> anyhow::Result<Inputs> {
        let mut inputs = self.read_cluster(need_evidence).await?;
        if !self.audit_log.is_empty() {
            let audit = crate::auditlog::AuditEvidence::read(&self.audit_log, self.audit_policy.as_deref())?;
            for note in &audit.notes {
                tracing::warn!("{note}");
            }
            inputs.audit = Some(match inputs.audit.take() {
                Some(mut collected) => {
                    collected.absorb(audit);
                    collected
                }
                None => audit,
            });
        }
        Ok(inputs)
    }

    async fn read_cluster(&self, need_evidence: bool) -> anyhow::Result<Inputs> {
        if self.live() {
            let client = self.client().await?;
            return plan::live::load(&client, self.namespace.as_deref(), &self.agent_namespace)
                .await
                .context("cannot read the cluster");
        }
        if self.objects.is_empty() {
            return Err(Usage(
                "--evidence needs --objects (pods, service accounts and workloads from kubectl get -o json)".into(),
            )
            .into());
        }
        if need_evidence && self.evidence.is_empty() {
            return Err(Usage("--objects needs --evidence (or neither, to read the cluster)".into()).into());
        }
        let mut inputs = Inputs::default();
        let mut exports = Vec::new();
        for file in &self.evidence {
            let started = std::time::Instant::now();
            exports.extend(plan::inputs::read_evidence_file(file)?);
            tracing::debug!(file = %file.display(), elapsed = ?started.elapsed(), rss_mib = plan::rss_mib(), "evidence read");
        }
        inputs.evidence = plan::inputs::merge_evidence(exports);
        for file in &self.objects {
            let started = std::time::Instant::now();
            let used = plan::inputs::read_objects_file(file, &mut inputs)?;
            tracing::debug!(file = %file.display(), used, elapsed = ?started.elapsed(), rss_mib = plan::rss_mib(), "objects read");
            if used == 0 {
                tracing::warn!(file = %file.display(), "no pods, service accounts or workloads in it");
            }
        }
        // Vectors grow by doubling: up to half of a big cluster's records would be slack.
        inputs.pod_records.shrink_to_fit();
        inputs.replica_set_records.shrink_to_fit();
        inputs.deployment_records.shrink_to_fit();
        Ok(inputs)
    }
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    source: Source,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Each workload must have been watched this long.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    min_observation: Duration,
    /// Jobs and CronJobs: runs observed from start.
    #[arg(long, default_value_t = 3)]
    min_runs: u64,
    /// Agent restarts up to this long during a container's life are tolerated.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    max_gap: Duration,
    /// Namespaces containing one of these words (split at - and _) go in the first phase.
    #[arg(long, value_delimiter = ',', default_value = "dev,development,test,testing,staging,qa,sandbox")]
    dev_words: Vec<String>,
    /// Share of the remaining changes in the canary phase (at least one).
    #[arg(long, default_value_t = 0.1)]
    canary: f64,
    #[command(flatten)]
    judgement: Judgement,
    /// Also write the verdicts to the cluster: one report per namespace (server-side apply,
    /// named `tokenprobe-automount`); read live, reports of earlier runs in namespaces with
    /// nothing left to report are removed. Needs the format's CRD.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "policyreport")]
    apply_reports: Option<output::ReportKind>,
}

/// What the evidence must show, shared by `plan` and `verify`.
#[derive(Debug, clap::Args)]
pub struct Judgement {
    /// Exec-session use of pods without exec probes or exec lifecycle hooks was people
    /// (kubectl exec), not the application: it does not keep the token.
    #[arg(long)]
    ignore_exec_sessions: bool,
    /// Accept evidence from nodes whose file-open hook runs in tracepoint mode, which misses some
    /// opens (docs/blind-spots.md); each verdict that relies on it says so.
    #[arg(long)]
    accept_tracepoint_mode: bool,
    /// Use by workloads that are gone keeps their ServiceAccount's token this long after it
    /// was last seen.
    #[arg(long, value_parser = parse_duration, default_value = "30d")]
    retention: Duration,
}

impl Judgement {
    fn apply(&self, policy: &mut Policy) {
        policy.ignore_exec_sessions = self.ignore_exec_sessions;
        policy.accept_tracepoint = self.accept_tracepoint_mode;
        policy.retention = self.retention;
    }
}

/// Exit code 2 for usage errors, 1 for others.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<Usage>().is_some() { ExitCode::from(2) } else { ExitCode::from(1) }
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.canary) {
        return Err(Usage(format!("--canary must be between 0 and 1, not {}", args.canary)).into());
    }
    let (inputs, now) = args.source.load(true).await?;
    let mut policy = Policy {
        min_observation: args.min_observation,
        min_runs: args.min_runs,
        max_gap: args.max_gap,
        dev_words: args.dev_words,
        canary_fraction: args.canary,
        now,
        ..Policy::default()
    };
    args.judgement.apply(&mut policy);
    let started = std::time::Instant::now();
    let plan = plan::plan(&inputs, &policy);
    tracing::debug!(elapsed = ?started.elapsed(), workloads = plan.workloads.len(), rss_mib = plan::rss_mib(), "planned");
    let started = std::time::Instant::now();
    // The inputs are freed while the plan is written (a big cluster's take a while to free).
    let freeing = std::thread::spawn(move || drop(inputs));
    // JSON and YAML are written as they are serialized; the others are made as text first.
    let text = match args.output {
        Format::Json | Format::Yaml => None,
        Format::Table => Some(output::plan_table(&plan)),
        Format::Patch => Some(output::patches(&plan)),
        Format::Script => Some(output::script(&plan)),
        Format::Policyreport => Some(output::policy_reports(&plan)),
        Format::Openreport => Some(output::open_reports(&plan)),
        Format::Plan => Some(output::markdown(&plan)),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = match text {
        None => output::write_structured(&mut out, &plan, args.output).map_err(std::io::Error::from),
        Some(text) => std::io::Write::write_all(&mut out, text.as_bytes()),
    }
    .and_then(|()| std::io::Write::flush(&mut out));
    freeing.join().ok();
    tracing::debug!(elapsed = ?started.elapsed(), "written");
    written.context("cannot write the plan")?;
    if let Some(kind) = args.apply_reports {
        let client = args.source.client().await?;
        let live = args.source.live();
        let applied = plan::apply::apply_reports(&client, &plan, kind, args.source.namespace.as_deref(), live).await?;
        let kind_name = kind.resource().2;
        tracing::info!(
            written = applied.written.len(),
            removed = applied.removed.len(),
            "{kind_name}s written{}",
            if live { "" } else { " (inputs from files: earlier reports are kept)" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    source: Source,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (inputs, _) = args.source.load(false).await?;
    let rows = plan::audit::audit(&inputs);
    let text = match args.output {
        Format::Json | Format::Yaml => output::structured(&rows, args.output)?,
        Format::Table => output::audit_table(&rows),
        other => return Err(Usage(format!("audit writes table, json or yaml, not {other:?}")).into()),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// `patch` and `script` give the rollbacks.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Exit code 3 when a regression was found.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (inputs, now) = args.source.load(true).await?;
    let found = plan::verify::verify(&inputs, &Policy { now, ..Policy::default() });
    let regressions = &found.regressions;
    let text = match args.output {
        Format::Table => output::verify_table(&found),
        Format::Json | Format::Yaml => output::structured(&found, args.output)?,
        Format::Patch => output::patches_of(regressions.iter().map(|r| &r.rollback)),
        Format::Script => output::rollback_script(regressions.iter().map(|r| &r.rollback)),
        other => return Err(Usage(format!("verify writes table, json, yaml, patch or script, not {other:?}")).into()),
    };
    print!("{text}");
    Ok(if regressions.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}
