//! The node's configuration files: containerd, CNI, kubelet, kube-proxy.

use super::{CONTAINERD_ROOT, CONTAINERD_SOCKET, NODE_NAME, POD_CIDR, STATE};
use crate::image::PAUSE;

/// containerd: CRI with runc and the cgroupfs driver (no systemd here), CNI from Debian's
/// plugins, everything under the node's own directories. `restrict_oom_score_adj`: no process
/// on these machines may lower `oom_score_adj` (no `CAP_SYS_RESOURCE`), which runc would try for
/// every pod sandbox.
pub fn containerd() -> String {
    format!(
        r#"version = 2
root = "{CONTAINERD_ROOT}"
state = "{STATE}/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{STATE}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE}/cni/net.d"
"#
    )
}

/// A bridge for the pods, addresses from the pod range, the bridge as their gateway. No
/// masquerading: nothing leaves the node's network namespace.
pub fn cni() -> String {
    format!(
        r#"{{"cniVersion": "0.4.0", "name": "tokenprobe", "plugins": [
  {{"type": "bridge", "bridge": "tp0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_CIDR}"}}]], "routes": [{{"dst": "0.0.0.0/0"}}],
             "dataDir": "{STATE}/cni/ipam"}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}
"#
    )
}

/// The kubelet: cgroupfs driver, no authentication between it and this test control plane,
/// evictions out of the way of a small test VM.
pub fn kubelet() -> String {
    r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
protectKernelDefaults: false
evictionHard: {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"#
    .to_owned()
}

/// kube-proxy in iptables mode, inside the node's network namespace; conntrack limits left
/// alone (they are the host's).
pub fn kube_proxy(kubeconfig: &str) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: "{kubeconfig}"}}
mode: iptables
clusterCIDR: "{POD_CIDR}"
hostnameOverride: "{NODE_NAME}"
conntrack: {{maxPerCore: 0, min: 0}}
metricsBindAddress: "127.0.0.1:10249"
healthzBindAddress: "127.0.0.1:10256"
"#
    )
}
