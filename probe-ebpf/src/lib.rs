//! Empty on purpose: probe-agent has a build-dependency on this package so cargo rebuilds the
//! agent when the kernel programs (the `tokenprobe` binary, built for BPF) change.
#![no_std]
