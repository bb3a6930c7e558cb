//! `cargo xtask apiserver build|start|stop|env`: a real kube-apiserver for the tests.
//!
//! No registry ships an API server binary, so it is built once from Debian bookworm's
//! `kubernetes` source package (1.20) with bookworm's Go 1.19 — the vendored reflect2 swapped
//! for Debian's 1.0.2, which works on Go ≥ 1.18 — and cached outside the clone with Debian's
//! etcd. `start` runs etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 with
//! `BoundServiceAccountTokenVolume` on (pods get `kube-api-access-*` volumes as on current
//! Kubernetes), writes a kubeconfig, and records PIDs; `stop` ends exactly those PIDs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use std::fmt::Write as _;

use anyhow::{Context as _, bail};

use crate::{apt, cmd};

/// The two instances the tests use: the usual one, with bound service-account token volumes
/// (`kube-api-access-*`, as on Kubernetes ≥ 1.21), and a legacy one without them, whose pods
/// get the ServiceAccount's token Secret mounted as before 1.21.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    Bound,
    Legacy,
    /// The real node's control plane: inside the node's network namespace, with every
    /// controller workloads need (see `node.rs`).
    Node,
}

/// The audit policy the repository ships for the second witness.
const AUDIT_POLICY: &str = include_str!("../../deploy/audit/policy.yaml");

/// The controllers the test instances run (the node-agent suite's set).
const CONTROLLERS: &str = "namespace,serviceaccount,serviceaccount-token,root-ca-cert-publisher,garbagecollector";
/// And those a real node's workloads need besides: ReplicaSets, DaemonSets, Jobs, CronJobs and
/// StatefulSets run; the not-ready taint goes when the node is Ready; the `kubernetes` Service
/// gets its EndpointSlice.
const NODE_CONTROLLERS: &str = "namespace,serviceaccount,serviceaccount-token,root-ca-cert-publisher,garbagecollector,\
deployment,replicaset,daemonset,job,cronjob,statefulset,endpoint,endpointslice,endpointslicemirroring,podgc,ttl,nodelifecycle";

impl Instance {
    pub const fn port(self) -> u16 {
        match self {
            Self::Bound => 16443,
            Self::Legacy => 16444,
            Self::Node => 16445,
        }
    }

    /// Where its audit webhook posts (`audit-sink` listens there during the test that uses
    /// it; otherwise the server retries and drops the batches). The other instances have none.
    pub const fn audit_webhook_port(self) -> Option<u16> {
        match self {
            Self::Bound => Some(16466),
            Self::Legacy | Self::Node => None,
        }
    }

    /// etcd's client, peer and metrics ports.
    const fn etcd_ports(self) -> (u16, u16, u16) {
        match self {
            Self::Bound => (23790, 23800, 23810),
            Self::Legacy => (23791, 23801, 23811),
            Self::Node => (23792, 23802, 23812),
        }
    }

    const fn feature_gates(self) -> &'static str {
        match self {
            Self::Bound | Self::Node => "BoundServiceAccountTokenVolume=true",
            Self::Legacy => "BoundServiceAccountTokenVolume=false",
        }
    }

    const fn run_dir(self) -> &'static str {
        match self {
            Self::Bound => "run",
            Self::Legacy => "run-legacy",
            Self::Node => "run-node",
        }
    }

    const fn controllers(self) -> &'static str {
        match self {
            Self::Bound | Self::Legacy => CONTROLLERS,
            Self::Node => NODE_CONTROLLERS,
        }
    }
}
#[derive(Debug, clap::Subcommand)]
pub enum ApiServerCommand {
    /// Build (once; cached) kube-apiserver, kube-controller-manager and etcd.
    Build,
    /// Start them on 127.0.0.1 (idempotent) and print the kubeconfig path.
    Start {
        /// The instance without bound service-account token volumes (legacy token Secrets).
        #[arg(long)]
        legacy: bool,
    },
    /// Stop the processes `start` started, by their recorded PIDs.
    Stop {
        #[arg(long)]
        legacy: bool,
    },
}

/// Where the binaries and the running instance live.
pub struct Paths {
    pub root: PathBuf,
    pub bin: PathBuf,
    pub run: PathBuf,
    pub instance: Instance,
    /// Run every process in this network namespace (`/run/netns/<name>`), reached from the
    /// host through a forwarder the caller runs.
    pub netns: Option<String>,
}

impl Paths {
    pub fn new(cache: &Path) -> Self {
        Self::of(cache, Instance::Bound)
    }

    pub fn of(cache: &Path, instance: Instance) -> Self {
        let root = cache.join("apiserver");
        Self { bin: root.join("bin"), run: root.join(instance.run_dir()), root, instance, netns: None }
    }

    fn api_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.instance.port())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.run.join("admin.kubeconfig")
    }

    /// The audit log (the log backend's JSON lines) and the policy it is written with.
    pub fn audit_log(&self) -> PathBuf {
        self.run.join("audit.log")
    }

    pub fn audit_policy(&self) -> PathBuf {
        self.run.join("audit-policy.yaml")
    }

    /// The kubeconfig of the audit webhook backend (see [`Instance::audit_webhook_port`]).
    fn audit_webhook(&self) -> PathBuf {
        self.run.join("audit-webhook.kubeconfig")
    }

    /// A command run in the instance's network namespace, if it has one.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

pub fn command(cache: &Path, command: &ApiServerCommand) -> anyhow::Result<()> {
    let instance = |legacy: bool| if legacy { Instance::Legacy } else { Instance::Bound };
    match command {
        ApiServerCommand::Build => build(&Paths::new(cache)),
        ApiServerCommand::Start { legacy } => {
            let (kubeconfig, _) = start(&Paths::of(cache, instance(*legacy)))?;
            println!("API server ready: export KUBECONFIG={}", kubeconfig.display());
            Ok(())
        }
        ApiServerCommand::Stop { legacy } => stop(&Paths::of(cache, instance(*legacy))),
    }
}

/// Unpacks the `.deb` files of `packages` (downloaded with the private apt) into `into`.
fn unpack_debs(apt_dir: &Path, work: &Path, packages: &[&str], into: &Path) -> anyhow::Result<()> {
    let downloads = work.join("debs");
    std::fs::create_dir_all(&downloads)?;
    cmd::run(apt::private("apt-get", apt_dir).args(["download", "-qq"]).args(packages).current_dir(&downloads))
        .with_context(|| format!("cannot download {}", packages.join(" ")))?;
    for deb in std::fs::read_dir(&downloads)?.flatten().map(|e| e.path()) {
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into))?;
    }
    std::fs::remove_dir_all(&downloads)?;
    Ok(())
}

/// The Kubernetes binaries built from the source package: the control plane, and what a real
/// node runs (kubelet, kube-proxy) with the scheduler that places its pods.
const KUBE_BINARIES: [&str; 5] =
    ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"];

fn built(paths: &Paths) -> bool {
    KUBE_BINARIES.iter().chain(&["etcd"]).all(|b| paths.bin.join(b).exists())
}

/// Builds the binaries once (about 10 minutes on 2 cores); later calls return at once.
pub fn build(paths: &Paths) -> anyhow::Result<()> {
    if built(paths) {
        return Ok(());
    }
    apt::ensure_tools(&[
        ("rsync", "rsync"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("make", "make"),
        ("dpkg-source", "dpkg-dev"),
    ])?;
    let apt_dir = paths.root.join("apt");
    let mut sources = String::new();
    for (url, suite) in [
        ("http://deb.debian.org/debian", "bookworm"),
        ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian-security", "bookworm-security"),
    ] {
        for kind in ["deb", "deb-src"] {
            writeln!(sources, "{kind} [signed-by={}] {url} {suite} main", apt::KEYRING).expect("write to a String");
        }
    }
    apt::prepare(&apt_dir, &sources)?;

    let work = paths.root.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    eprintln!("xtask: building Kubernetes from Debian's kubernetes source package (once, ~10 min)");
    let tools = work.join("tools");
    unpack_debs(
        &apt_dir,
        &work,
        &["golang-1.19-go", "golang-1.19-src", "golang-github-modern-go-reflect2-dev", "etcd-server"],
        &tools,
    )?;
    let source_dir = work.join("source");
    std::fs::create_dir_all(&source_dir)?;
    cmd::run(
        apt::private("apt-get", &apt_dir)
            .args(["source", "--download-only", "-qq", "kubernetes"])
            .current_dir(&source_dir),
    )
    .context("cannot download the kubernetes source package")?;
    let dsc = std::fs::read_dir(&source_dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "dsc"))
        .context("no .dsc downloaded")?;
    let src = work.join("kubernetes");
    cmd::run(Command::new("dpkg-source").args(["--no-check", "-x"]).arg(&dsc).arg(&src))?;

    // reflect2 1.0.1 (vendored) breaks on Go >= 1.18; Debian's 1.0.2 is API-compatible. Its
    // sources replace the vendored ones whole (1.0.2 dropped some files).
    let reflect2 = src.join("vendor/github.com/modern-go/reflect2");
    let debian_reflect2 = tools.join("usr/share/gocode/src/github.com/modern-go/reflect2");
    for entry in std::fs::read_dir(&reflect2)?.flatten() {
        let name = entry.file_name();
        let ext = Path::new(&name).extension().and_then(|e| e.to_str());
        if matches!(ext, Some("go" | "s")) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for entry in std::fs::read_dir(&debian_reflect2)
        .with_context(|| format!("no reflect2 in {}", debian_reflect2.display()))?
        .flatten()
    {
        let target = reflect2.join(entry.file_name());
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }

    let goroot = tools.join("usr/lib/go-1.19");
    let path = format!("{}:{}", goroot.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    cmd::run(
        Command::new("make")
            .arg(format!("WHAT={}", KUBE_BINARIES.map(|b| format!("cmd/{b}")).join(" ")))
            .current_dir(&src)
            .env("PATH", path)
            .env("GOROOT", &goroot)
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=vendor")
            .env("GOPATH", work.join("gopath"))
            .env_remove("GOBIN"),
    )
    .context("building kube-apiserver failed")?;
    let out = src.join("_output/local/bin/linux/amd64");
    std::fs::create_dir_all(&paths.bin)?;
    for b in KUBE_BINARIES {
        std::fs::copy(out.join(b), paths.bin.join(b)).with_context(|| format!("{b} was not built"))?;
    }
    std::fs::copy(tools.join("usr/bin/etcd"), paths.bin.join("etcd")).context("etcd-server has no usr/bin/etcd")?;
    // Kubernetes' build keeps its Go cache in _output, inside the work dir.
    std::fs::remove_dir_all(&work)?;
    eprintln!("xtask: API server binaries cached in {}", paths.bin.display());
    Ok(())
}

fn openssl(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().context("cannot run openssl")?;
    if !out.status.success() {
        bail!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A CA, a serving certificate for 127.0.0.1, an admin client certificate in
/// `system:masters`, and the service-account signing key.
fn certificates(dir: &Path, port: u16) -> anyhow::Result<()> {
    if dir.join("admin.crt").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=tokenprobe-test-ca",
        ],
        dir,
    )?;
    // Extensions make these X.509 v3 certificates (rustls refuses v1).
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,IP:10.99.0.2,DNS:kubernetes,DNS:kubernetes.default.svc\n\
         extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")?;
    for (name, subject, ext) in [
        ("server", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=tokenprobe-admin", "client.ext"),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject], dir)?;
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "3650",
        ];
        args.extend(["-extfile", ext]);
        openssl(&args, dir)?;
    }
    openssl(&["genrsa", "-out", "sa.key", "2048"], dir)?;
    openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir)?;
    std::fs::write(dir.join("tokens.csv"), "tokenprobe-test-token,tokenprobe-test,1001,system:masters\n")?;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\n\
         users:\n- name: admin\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n",
        ca = dir.join("ca.crt").display(),
        crt = dir.join("admin.crt").display(),
        key = dir.join("admin.key").display(),
    );
    std::fs::write(dir.join("admin.kubeconfig"), kubeconfig)?;
    Ok(())
}

fn pid_alive(pid: i32, binary: &str) -> bool {
    // Only a live process running our binary counts (a recycled PID does not).
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split('\0').next().is_some_and(|exe| exe.ends_with(binary)))
}

fn read_pid(run: &Path, name: &str) -> Option<i32> {
    std::fs::read_to_string(run.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
}

/// Starts a process in its own process group, output to `<name>.log`, PID to `<name>.pid`.
fn spawn(paths: &Paths, name: &str, args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let log = std::fs::File::create(paths.run.join(format!("{name}.log")))?;
    let child = paths
        .command(paths.bin.join(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    std::fs::write(paths.run.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(())
}

fn wait_until(what: &str, timeout: Duration, log: &Path, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(30).collect();
    bail!(
        "{what} not ready after {}s; last lines of {}:\n{}",
        timeout.as_secs(),
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

fn api_ready(paths: &Paths) -> bool {
    let run = &paths.run;
    Command::new("curl")
        .args(["-sf", "--max-time", "2", "--cacert"])
        .arg(run.join("ca.crt"))
        .arg("--cert")
        .arg(run.join("admin.crt"))
        .arg("--key")
        .arg(run.join("admin.key"))
        .arg(paths.api_url("/readyz"))
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ok"))
}

/// kube-apiserver's flags: loopback (or its network namespace), the test certificates and
/// tokens, bound service-account tokens, and the audit log with the repository's policy.
fn apiserver_args(paths: &Paths, etcd_client: &str, feature_gates: &str) -> Vec<String> {
    let run = |f: &str| paths.run.join(f).display().to_string();
    let mut args = vec![
        format!("--etcd-servers={etcd_client}"),
        // In its own network namespace it serves every address there (pods reach it at the
        // node's address behind the `kubernetes` Service); on the host, loopback only.
        format!("--bind-address={}", if paths.netns.is_some() { "0.0.0.0" } else { "127.0.0.1" }),
        format!("--advertise-address={}", advertise(paths)),
        format!("--secure-port={}", paths.instance.port()),
        "--insecure-port=0".into(),
        format!("--tls-cert-file={}", run("server.crt")),
        format!("--tls-private-key-file={}", run("server.key")),
        format!("--client-ca-file={}", run("ca.crt")),
        format!("--token-auth-file={}", run("tokens.csv")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", run("sa.pub")),
        format!("--service-account-signing-key-file={}", run("sa.key")),
        "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--authorization-mode=Node,RBAC".into(),
        "--allow-privileged=true".into(),
        format!("--endpoint-reconciler-type={}", if paths.netns.is_some() { "lease" } else { "none" }),
        "--kubelet-preferred-address-types=InternalIP".into(),
        format!("--feature-gates={feature_gates}"),
        format!("--audit-policy-file={}", paths.audit_policy().display()),
        format!("--audit-log-path={}", paths.audit_log().display()),
        "--audit-log-format=json".into(),
        "--audit-log-mode=blocking".into(),
    ];
    if paths.instance.audit_webhook_port().is_some() {
        args.extend([
            format!("--audit-webhook-config-file={}", paths.audit_webhook().display()),
            "--audit-webhook-mode=batch".into(),
            "--audit-webhook-batch-max-wait=1s".into(),
            "--audit-webhook-initial-backoff=1s".into(),
        ]);
    }
    args
}

/// Starts etcd, kube-apiserver and kube-controller-manager (building them first if needed);
/// returns the admin kubeconfig and whether this call started them (already running: returns
/// at once).
pub fn start(paths: &Paths) -> anyhow::Result<(PathBuf, bool)> {
    build(paths)?;
    std::fs::create_dir_all(&paths.run)?;
    let running = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .iter()
        .all(|n| read_pid(&paths.run, n).is_some_and(|p| pid_alive(p, n)));
    if running && api_ready(paths) {
        return Ok((paths.kubeconfig(), false));
    }
    stop(paths)?;
    certificates(&paths.run, paths.instance.port())?;
    let (etcd_client, etcd_peer, etcd_metrics) = paths.instance.etcd_ports();
    let etcd_client = format!("http://127.0.0.1:{etcd_client}");
    let etcd_peer = format!("http://127.0.0.1:{etcd_peer}");
    let feature_gates = paths.instance.feature_gates();
    let run = |f: &str| paths.run.join(f).display().to_string();
    // The audit policy users are told to use (service-account requests at Metadata level).
    std::fs::write(paths.audit_policy(), AUDIT_POLICY)?;
    if let Some(port) = paths.instance.audit_webhook_port() {
        std::fs::write(
            paths.audit_webhook(),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sink\n  cluster: {{server: 'http://127.0.0.1:{port}/'}}\n\
                 users:\n- name: apiserver\n  user: {{}}\ncontexts:\n- name: sink\n  context: {{cluster: sink, user: apiserver}}\n\
                 current-context: sink\n"
            ),
        )?;
    }
    if paths.audit_log().exists() {
        std::fs::remove_file(paths.audit_log())?;
    }
    let etcd_data = paths.run.join("etcd-data");
    if etcd_data.exists() {
        std::fs::remove_dir_all(&etcd_data)?;
    }
    spawn(
        paths,
        "etcd",
        &[
            format!("--data-dir={}", etcd_data.display()),
            format!("--listen-client-urls={etcd_client}"),
            format!("--advertise-client-urls={etcd_client}"),
            format!("--listen-peer-urls={etcd_peer}"),
            format!("--initial-advertise-peer-urls={etcd_peer}"),
            format!("--initial-cluster=default={etcd_peer}"),
            format!("--listen-metrics-urls=http://127.0.0.1:{etcd_metrics}"),
            "--unsafe-no-fsync".into(),
        ],
    )?;
    wait_until("etcd", Duration::from_secs(30), &paths.run.join("etcd.log"), || {
        paths
            .command("curl")
            .args(["-sf", "--max-time", "2", &format!("{etcd_client}/health")])
            .output()
            .is_ok_and(|o| o.status.success())
    })?;
    spawn(paths, "kube-apiserver", &apiserver_args(paths, &etcd_client, feature_gates))?;
    wait_until("kube-apiserver", Duration::from_secs(90), &paths.run.join("kube-apiserver.log"), || api_ready(paths))?;
    spawn(
        paths,
        "kube-controller-manager",
        &[
            format!("--kubeconfig={}", paths.kubeconfig().display()),
            format!("--controllers={}", paths.instance.controllers()),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            format!("--service-account-private-key-file={}", run("sa.key")),
            format!("--root-ca-file={}", run("ca.crt")),
            format!("--feature-gates={feature_gates}"),
        ],
    )?;
    // The controller-manager has no port to ask; the default ServiceAccount it creates is the
    // sign that it works.
    let kubeconfig = paths.kubeconfig();
    wait_until(
        "kube-controller-manager",
        Duration::from_mins(1),
        &paths.run.join("kube-controller-manager.log"),
        || {
            Command::new("curl")
                .args(["-sf", "--max-time", "2", "--cacert"])
                .arg(paths.run.join("ca.crt"))
                .arg("--cert")
                .arg(paths.run.join("admin.crt"))
                .arg("--key")
                .arg(paths.run.join("admin.key"))
                .arg(paths.api_url("/api/v1/namespaces/default/serviceaccounts/default"))
                .output()
                .is_ok_and(|o| o.status.success())
        },
    )?;
    Ok((kubeconfig, true))
}

/// The address the API server advertises: the node's, in the node's network namespace.
fn advertise(paths: &Paths) -> &'static str {
    if paths.netns.is_some() { crate::node::NODE_IP } else { "127.0.0.1" }
}

/// Ends the processes `start` recorded, by PID: SIGTERM, then SIGKILL after 10 s.
pub fn stop(paths: &Paths) -> anyhow::Result<()> {
    for name in ["kube-controller-manager", "kube-apiserver", "etcd"] {
        let pid_file = paths.run.join(format!("{name}.pid"));
        let Some(pid) = read_pid(&paths.run, name) else { continue };
        if pid_alive(pid, name) {
            cmd::run(Command::new("kill").arg("-TERM").arg(pid.to_string()))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid, name) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if pid_alive(pid, name) {
                cmd::run(Command::new("kill").arg("-KILL").arg(pid.to_string()))?;
            }
        }
        std::fs::remove_file(&pid_file)?;
    }
    Ok(())
}
