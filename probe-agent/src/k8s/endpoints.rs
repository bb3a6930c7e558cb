//! The addresses connects to which count as API use: the `default/kubernetes` Service's
//! ClusterIP(s) with its port, and its endpoints with theirs (Cilium's socket load-balancing
//! rewrites the `ClusterIP` to an endpoint at connect time).
//!
//! Endpoints come from discovery/v1 `EndpointSlices`; on a cluster that does not serve that
//! version (Kubernetes < 1.21) from discovery/v1beta1; with no slices at all, from the core
//! Endpoints object.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::{
    core::v1::{Endpoints, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams},
};
use serde::Deserialize;

use super::is_not_served;

/// Where the endpoint addresses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EndpointSource {
    EndpointSliceV1,
    EndpointSliceV1beta1,
    Endpoints,
    None,
}

/// The API server's addresses as seen from pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTargets {
    pub service: Vec<SocketAddr>,
    pub endpoints: Vec<SocketAddr>,
    pub source: EndpointSource,
}

impl ApiTargets {
    /// Every address, service first, without duplicates.
    #[must_use]
    pub fn all(&self) -> Vec<SocketAddr> {
        let mut all = self.service.clone();
        for e in &self.endpoints {
            if !all.contains(e) {
                all.push(*e);
            }
        }
        all
    }
}

/// The fields of an `EndpointSlice` tokenprobe reads; the same in v1 and v1beta1.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SliceLite {
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Vec<SlicePort>,
}

#[derive(Debug, Default, Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Option<SliceConditions>,
}

#[derive(Debug, Default, Deserialize)]
struct SliceConditions {
    ready: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct SlicePort {
    port: Option<i32>,
}

fn port(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|&p| p != 0)
}

/// Address × port pairs of a slice's ready endpoints (unknown readiness counts as ready).
fn slice_targets(slice: &SliceLite) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for endpoint in slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false)) {
        for address in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
            for p in slice.ports.iter().filter_map(|p| p.port.and_then(port)) {
                out.push(SocketAddr::new(address, p));
            }
        }
    }
    out
}

/// Address × port pairs of a core Endpoints object.
fn endpoints_targets(endpoints: &Endpoints) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in endpoints.subsets.as_deref().unwrap_or_default() {
        let ports: Vec<u16> = subset.ports.as_deref().unwrap_or_default().iter().filter_map(|p| port(p.port)).collect();
        for address in
            subset.addresses.as_deref().unwrap_or_default().iter().filter_map(|a| a.ip.parse::<IpAddr>().ok())
        {
            out.extend(ports.iter().map(|p| SocketAddr::new(address, *p)));
        }
    }
    out
}

/// The Service's ClusterIP(s) × its ports.
fn service_targets(service: &Service) -> Vec<SocketAddr> {
    let Some(spec) = &service.spec else { return Vec::new() };
    let mut ips: Vec<IpAddr> =
        spec.cluster_ips.as_deref().unwrap_or_default().iter().filter_map(|ip| ip.parse().ok()).collect();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()));
    }
    let ports: Vec<u16> = spec.ports.as_deref().unwrap_or_default().iter().filter_map(|p| port(p.port)).collect();
    ips.iter().flat_map(|ip| ports.iter().map(move |p| SocketAddr::new(*ip, *p))).collect()
}

const V1BETA1_SLICE: fn() -> ApiResource = || ApiResource {
    group: "discovery.k8s.io".into(),
    version: "v1beta1".into(),
    api_version: "discovery.k8s.io/v1beta1".into(),
    kind: "EndpointSlice".into(),
    plural: "endpointslices".into(),
};

async fn slices(client: &Client) -> Result<(Vec<SocketAddr>, EndpointSource), kube::Error> {
    let params = ListParams::default().labels("kubernetes.io/service-name=kubernetes");
    match Api::<EndpointSlice>::namespaced(client.clone(), "default").list(&params).await {
        Ok(list) => {
            let mut out = Vec::new();
            for slice in &list.items {
                let lite: SliceLite = serde_json::to_value(slice).and_then(serde_json::from_value).unwrap_or_default();
                out.extend(slice_targets(&lite));
            }
            Ok((out, EndpointSource::EndpointSliceV1))
        }
        Err(e) if is_not_served(&e) => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &V1BETA1_SLICE());
            match api.list(&params).await {
                Ok(list) => {
                    let mut out = Vec::new();
                    for slice in &list.items {
                        let lite: SliceLite = serde_json::from_value(slice.data.clone()).unwrap_or_default();
                        out.extend(slice_targets(&lite));
                    }
                    Ok((out, EndpointSource::EndpointSliceV1beta1))
                }
                Err(e) if is_not_served(&e) => Ok((Vec::new(), EndpointSource::None)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads the API server's addresses from the cluster.
///
/// # Errors
/// API errors other than "not served" (those select a fallback).
pub async fn api_server_targets(client: &Client) -> Result<ApiTargets, kube::Error> {
    let service = Api::<Service>::namespaced(client.clone(), "default").get_opt("kubernetes").await?;
    let service = service.as_ref().map(service_targets).unwrap_or_default();
    let (mut endpoints, mut source) = slices(client).await?;
    if endpoints.is_empty() {
        let core = Api::<Endpoints>::namespaced(client.clone(), "default").get_opt("kubernetes").await?;
        endpoints = core.as_ref().map(endpoints_targets).unwrap_or_default();
        source = if endpoints.is_empty() { EndpointSource::None } else { EndpointSource::Endpoints };
    }
    Ok(ApiTargets { service, endpoints, source })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn slice_addresses_times_ports_skipping_unready() {
        let slice: SliceLite = serde_json::from_value(json!({
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.1.0.5"], "conditions": {"ready": true}},
                {"addresses": ["10.1.0.6"]},
                {"addresses": ["10.1.0.7"], "conditions": {"ready": false}},
                {"addresses": ["not-an-ip"]}
            ],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}, {"port": 0}]
        }))
        .unwrap();
        let got: Vec<String> = slice_targets(&slice).iter().map(ToString::to_string).collect();
        assert_eq!(got, vec!["10.1.0.5:6443", "10.1.0.6:6443"]);
    }

    #[test]
    fn service_and_core_endpoints() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00::1"], "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}
        }))
        .unwrap();
        let got: Vec<String> = service_targets(&svc).iter().map(ToString::to_string).collect();
        assert_eq!(got, vec!["10.96.0.1:443", "[fd00::1]:443"]);
        let eps: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}, {"ip": "bad"}], "ports": [{"name": "https", "port": 6443}]}]
        }))
        .unwrap();
        assert_eq!(endpoints_targets(&eps), vec!["192.0.2.10:6443".parse().unwrap()]);
        let t = ApiTargets {
            service: vec!["10.96.0.1:443".parse().unwrap()],
            endpoints: vec!["192.0.2.10:6443".parse().unwrap(), "10.96.0.1:443".parse().unwrap()],
            source: EndpointSource::Endpoints,
        };
        assert_eq!(t.all().len(), 2);
    }
}
