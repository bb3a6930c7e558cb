fn main() {
    println!("{}", probe_agent::ebpf::OBJECT.len());
}
